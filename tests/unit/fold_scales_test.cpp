// fold-scales (issue 22): batch norm's inference form after a convolution or
// dense layer moves into the weights, so predict runs no normalization pass
// over the activations; the folded program still matches the interpreter.
#include <doctest/doctest.h>

#include <cstring>

#include "compiler/codegen/jit.h"
#include "compiler/codegen/programs.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/ir/builder.h"
#include "compiler/passes/passes.h"
#include "tests/unit/codegen_helpers.h"
#include "tests/unit/test_util.h"

using namespace kiln;

TEST_CASE("fold-scales: predict's batch norm after a convolution becomes scaled weights plus a shift") {
  Graph model = load_graph(test::source_path("tests/fixtures/bn_dropout_cnn.json"));
  auto graphs = codegen::program_graphs(model, nullptr);
  const Graph& g = graphs->model;  // the inference form, simplified
  NodeId conv = kNoNode;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (g.nodes[i].op == "conv2d") conv = static_cast<NodeId>(i);
  REQUIRE(conv != kNoNode);
  const Shape activations = g.node(conv).type.shape;
  CHECK(g.node(g.node(conv).inputs[1]).op == "mul");  // conv/kernel * bn's scale
  int multiplies_over_activations = 0;
  for (const Node& n : g.nodes) multiplies_over_activations += n.op == "mul" && n.type.shape == activations;
  CHECK(multiplies_over_activations == 0);
  auto ir = test::run_kiln("ir tests/fixtures/bn_dropout_cnn.json --stage loops --entry predict --why 2>&1");
  INFO(ir.output);
  CHECK(ir.output.find("epilogue: ") != std::string::npos);  // the shift (and relu) ride on the GEMM
}

TEST_CASE("fold-scales: a dense layer's per-unit scale from params folds, one from an input does not") {
  codegen_test::JitCase c(3, 4);
  NodeId x = c.input("x", {kOpenDim, 6});
  NodeId w = c.param("w", {6, 5});
  NodeId s = c.param("s", {5}, 0.5, 1.5);
  NodeId t = c.input("t", {5});
  c.out("by_param", c.op("mul", {c.op("exp", {s}), c.op("matmul", {x, w})}));
  c.out("by_input", c.op("mul", {c.op("matmul", {x, w}), t}));
  Graph before = c.g;
  CHECK(fold_scales_into_weights(c.g));
  int folded = 0;
  for (const Node& n : c.g.nodes)
    if (n.op == "matmul") folded += c.g.node(n.inputs[1]).op == "mul";
  CHECK(folded == 1);
  c.check(1e-5);  // the folded graph, compiled, against the interpreter of the folded graph
  // and the folded graph's values are the original's
  auto want = interp::Interpreter(before, interp::Precision::f64).run(c.feeds, {"by_param", "by_input"});
  auto got = interp::Interpreter(c.g, interp::Precision::f64).run(c.feeds, {"by_param", "by_input"});
  for (const char* o : {"by_param", "by_input"})
    for (size_t i = 0; i < want.at(o).data.size(); ++i) CHECK(got.at(o).data[i] == doctest::Approx(want.at(o).data[i]).epsilon(1e-12));
}

// The program hands the product itself out: folding the scale into the
// weights would leave both products to compute (the plain one for the output,
// the scaled one for its reader), so the scale stays where it is.
TEST_CASE("fold-scales: a per-unit scale of a product the program also hands out stays") {
  codegen_test::JitCase c(3, 4);
  NodeId x = c.input("x", {kOpenDim, 6});
  NodeId w = c.param("w", {6, 5});
  NodeId s = c.param("s", {5}, 0.5, 1.5);
  NodeId product = c.op("matmul", {x, w});
  c.out("product", product);
  c.out("scaled", c.op("mul", {c.op("exp", {s}), product}));
  CHECK_FALSE(fold_scales_into_weights(c.g));
  int products = 0;
  for (const Node& n : c.g.nodes) products += n.op == "matmul";
  CHECK(products == 1);
  c.check(1e-5);
}

TEST_CASE("fold-scales: predict computes the folded weights once per parameter load, not per call") {
  Graph model = load_graph(test::source_path("tests/fixtures/bn_dropout_cnn.json"));
  auto graphs = codegen::program_graphs(model, nullptr);
  std::vector<lower::EntrySpec> entries;
  for (auto& e : graphs->entries())
    if (e.name == "predict") entries.push_back(e);
  auto cp = codegen::compile_entries(graphs->model.name, entries, {.max_batch = 2});
  Program prog(cp->info());
  auto params = interp::init_params(graphs->model, 3);
  auto write_params = [&] {
    for (auto& [name, v] : params) {
      auto bytes = codegen::to_bytes(v, v.dtype);
      std::memcpy(prog.persistent(name), bytes.data(), bytes.size());  // bumps the params epoch
    }
  };
  write_params();
  interp::Value x{DType::f32, {2, 28, 28, 1}, std::vector<double>(2 * 784, 0.5)};
  auto predict = [&] { return codegen::run_entry(prog, "predict", 2, {{"x", x}}).at("probabilities").data; };
  const auto first = predict();
  // Scribble over the folded weights: a call that does not recompute them shows it.
  const lower::Buffer* folded = nullptr;
  for (const lower::Buffer& b : cp->loops().buffers)
    if (b.name.rfind("prepared:", 0) == 0 && b.shape.size() == 4) folded = &b;
  REQUIRE(folded != nullptr);
  std::memset(prog.context().state + folded->offset, 0, static_cast<size_t>(folded->bytes(1)));
  // (the convolution reads the folded filter as panels packed from it, also once per load)
  for (const lower::Buffer& b : cp->loops().buffers)
    if (b.name.rfind("packed B of", 0) == 0) std::memset(prog.context().state + b.offset, 0, static_cast<size_t>(b.bytes(1)));
  CHECK(predict() != first);     // same params: the scribbled weights were used, not recomputed
  write_params();                // a parameter load
  CHECK(predict() == first);     // recomputed once, bit for bit
}

TEST_CASE("fold-scales: a scalar scale of a product moves to its smallest linear input, never to a larger one") {
  codegen_test::JitCase c(3, 64);
  // Attention's scores: q k^T / sqrt(d), the product [N, 8, 8] four times q's [N, 8, 2].
  NodeId q = c.input("q", {kOpenDim, 8, 2});
  NodeId k = c.input("k", {kOpenDim, 8, 2});
  c.out("scores", c.op("mul", {c.op("matmul", {q, k}, {{"transpose_b", true}}), c.b.constant(0.25)}));
  // [N, 6] @ [6, 6]: the weights are the smaller input; [6, 6] @ [6, 6]: neither input is smaller than the product.
  NodeId w = c.param("w", {6, 6});
  NodeId x = c.input("x", {kOpenDim, 6});
  c.out("wide", c.op("mul", {c.b.constant(0.5), c.op("matmul", {x, w})}));
  c.out("square", c.op("mul", {c.op("matmul", {w, w}), c.b.constant(2.0)}));
  Graph before = c.g;
  CHECK(fold_scales_into_weights(c.g));
  std::vector<std::string> scaled;  // the ops of each folded product's inputs
  for (const Node& n : c.g.nodes)
    if (n.op == "matmul" && n.name.find("/scaled") != std::string::npos)
      scaled.push_back(c.g.node(n.inputs[0]).op + "," + c.g.node(n.inputs[1]).op);
  CHECK(scaled == std::vector<std::string>{"mul,input", "input,mul"});  // q (the first of two equal) and w carry the scale
  c.check(1e-5);
  auto want = interp::Interpreter(before, interp::Precision::f64).run(c.feeds, {"scores", "square", "wide"});
  auto got = interp::Interpreter(c.g, interp::Precision::f64).run(c.feeds, {"scores", "square", "wide"});
  for (const char* o : {"scores", "square", "wide"})
    for (size_t i = 0; i < want.at(o).data.size(); ++i) CHECK(got.at(o).data[i] == doctest::Approx(want.at(o).data[i]).epsilon(1e-12));
}

TEST_CASE("fold-scales: a scalar scale travels through an input as large as the product when it can travel on") {
  // softmax_grad is linear in dy, dy = dO V^T is linear in dO, smaller than both: the scale lands on dO.
  codegen_test::JitCase c(2, 64);
  NodeId y = c.input("y", {kOpenDim, 8, 8}, 0, 1);
  NodeId d_o = c.input("d_o", {kOpenDim, 8, 2}), v = c.input("v", {kOpenDim, 8, 2});
  NodeId dy = c.op("matmul", {d_o, v}, {{"transpose_b", true}});
  c.out("ds", c.op("mul", {c.op("softmax_grad", {y, dy}, {{"causal", true}}), c.b.constant(0.25)}));
  // A scale of y + z (add is not linear in one input alone) stays where it is.
  NodeId z = c.input("z", {kOpenDim, 8, 8});
  c.out("sum", c.op("mul", {c.op("add", {y, z}), c.b.constant(0.5)}));
  Graph before = c.g;
  while (fold_scales_into_weights(c.g)) {}
  const Node* product = nullptr;
  for (const Node& n : c.g.nodes)
    if (n.op == "matmul") product = &n;
  REQUIRE(product != nullptr);
  const Node& scaled = c.g.node(product->inputs[0]);
  CHECK(scaled.op == "mul");
  CHECK(c.g.node(scaled.inputs[0]).name == "d_o");
  int muls = 0;
  for (const Node& n : c.g.nodes) muls += n.op == "mul";
  CHECK(muls == 2);  // d_o's and the sum's
  c.check(1e-5);
  auto want = interp::Interpreter(before, interp::Precision::f64).run(c.feeds, {"ds", "sum"});
  auto got = interp::Interpreter(c.g, interp::Precision::f64).run(c.feeds, {"ds", "sum"});
  for (const char* o : {"ds", "sum"})
    for (size_t i = 0; i < want.at(o).data.size(); ++i) CHECK(got.at(o).data[i] == doctest::Approx(want.at(o).data[i]).epsilon(1e-12));
}
