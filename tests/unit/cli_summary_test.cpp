// `kiln summary` prints the Keras-like table the issue specifies.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "test_util.h"

using kiln::test::run_kiln;

static bool has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

TEST_CASE("kiln summary of the CNN matches Keras row by row") {
  auto r = run_kiln("summary graphs/cnn_mnist.json");
  REQUIRE(r.exit_code == 0);
  for (const char* shape : {"26x26x32", "13x13x32", "11x11x64", "5x5x64", "3x3x64", "1x1x64"}) CHECK(has(r.output, shape));
  for (const char* count : {" 320\n", " 18,496\n", " 36,928\n", " 650\n"}) CHECK(has(r.output, count));
  CHECK(has(r.output, "flatten (flatten)                  64 "));
  CHECK(has(r.output, "dense (dense)                      10 "));
  CHECK(has(r.output, "Total params: 56,394"));
}

TEST_CASE("kiln summary of the transfer graph and the MLP") {
  auto t = run_kiln("summary graphs/cnn_mnist_transfer.json");
  REQUIRE(t.exit_code == 0);
  CHECK(has(t.output, "Total params: 55,809"));
  CHECK(has(t.output, "Trainable params: 65\n"));
  CHECK(has(t.output, "Non-trainable params: 55,744"));
  auto m = run_kiln("summary graphs/mlp_cifar10.json");
  REQUIRE(m.exit_code == 0);
  CHECK(has(m.output, "Total params: 3,157,002"));
}

TEST_CASE("kiln ops lists every op with its shape rule") {
  auto r = run_kiln("ops");
  REQUIRE(r.exit_code == 0);
  CHECK(has(r.output, "conv2d  [primitive, conv]"));
  CHECK(has(r.output, "is:     elementwise; commutative; associative; identity 0; 4 samples"));  // add's declared facts
  CHECK(has(r.output, "shape:  x: [N,H,W,C], w: [KH,KW,C,F] -> [N,OH,OW,F]"));
  CHECK(has(r.output, "sparse_softmax_cross_entropy  [composite, losses]"));
  // Layers and activations in sections of their own, and the JSON form tools read.
  CHECK(has(r.output, "\nLayers ("));
  CHECK(has(r.output, "depthwise_conv2d  each channel convolved"));
  CHECK(has(r.output, "\nActivations: linear"));
  auto j = run_kiln("ops --json");
  REQUIRE(j.exit_code == 0);
  auto registry = nlohmann::json::parse(j.output);
  CHECK(registry.at("ops").size() >= 100);
  CHECK(registry.at("layers").size() >= 10);
}

TEST_CASE("kiln usage errors exit 2, input errors exit 1") {
  CHECK(run_kiln("summary").exit_code == 2);
  CHECK(run_kiln("frobnicate").exit_code == 2);
  auto r = run_kiln("summary tests/unit/main.cpp");
  CHECK(r.exit_code == 1);
  CHECK(has(r.output, "not valid JSON: line 1"));
}
