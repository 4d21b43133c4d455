// Contractions declare the GEMMs they amount to (OpDef::gemms): what a
// machine limit times with a BLAS and `kiln gemms` lists.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "compiler/ir/builder.h"
#include "compiler/ops/registry.h"
#include "test_util.h"

using namespace kiln;

namespace {

std::vector<GemmShape> gemms_of(const Graph& g, NodeId id, int64_t batch) {
  const Node& n = g.node(id);
  const OpDef* def = OpRegistry::get().find(n.op);
  REQUIRE(def);
  REQUIRE(def->gemms);
  return def->gemms(g, n, batch);
}

void check_gemm(const GemmShape& s, int64_t count, int64_t m, int64_t k, int64_t n, bool ta, bool tb) {
  CHECK(s.count == count);
  CHECK(s.m == m);
  CHECK(s.k == k);
  CHECK(s.n == n);
  CHECK(s.trans_a == ta);
  CHECK(s.trans_b == tb);
}

}  // namespace

TEST_CASE("gemm shapes: every primitive contraction declares its GEMMs") {
  for (const OpDef& def : OpRegistry::get().all())
    if (def.pattern == OpPattern::contraction && !def.composite()) {
      INFO(def.name);
      CHECK(def.gemms);
    }
}

TEST_CASE("gemm shapes: a grouped, strided convolution and its two gradients as im2col GEMMs per group") {
  Graph g;
  GraphBuilder b(g);
  // 2 groups of 3 input channels, 8 filters (4 per group), 3x3 windows, stride 2, same padding: 9x10 -> 5x5.
  NodeId x = b.input("x", {DType::f32, {-1, 9, 10, 6}});
  NodeId w = b.param("w", {DType::f32, {3, 3, 3, 8}});
  NodeId y = b.add("conv2d", {x, w}, {{"groups", 2}, {"strides", {2, 2}}, {"padding", "same"}});
  REQUIRE(g.node(y).type.shape == Shape{-1, 5, 5, 8});
  auto fwd = gemms_of(g, y, 4);
  REQUIRE(fwd.size() == 1);
  check_gemm(fwd[0], 2, 4 * 25, 27, 4, false, false);
  CHECK(multiply_adds(g, g.node(y), 4) == 2 * 100 * 27 * 4);

  NodeId dy = b.input("dy", {DType::f32, {-1, 5, 5, 8}});
  NodeId dx = b.add("conv2d_backprop_input", {dy, w},
                    {{"groups", 2}, {"strides", {2, 2}}, {"padding", "same"}, {"input_hw", {9, 10}}});
  NodeId dw = b.add("conv2d_backprop_filter", {x, dy},
                    {{"groups", 2}, {"strides", {2, 2}}, {"padding", "same"}, {"filter_hw", {3, 3}}});
  check_gemm(gemms_of(g, dx, 4).at(0), 2, 100, 4, 27, false, true);  // dy [100, 4] x w^T per group
  check_gemm(gemms_of(g, dw, 4).at(0), 2, 27, 100, 4, true, false);  // windows^T [27, 100] x dy per group
  // The open batch dimension scales every one of them.
  CHECK(multiply_adds(g, g.node(dw), 8) == 2 * multiply_adds(g, g.node(dw), 4));
}

TEST_CASE("gemm shapes: matmul folds a shared matrix's batch into rows, keeps a true batch as a count") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {-1, 16, 24}});   // [batch, tokens, features]
  NodeId w = b.param("w", {DType::f32, {24, 40}});
  check_gemm(gemms_of(g, b.add2("matmul", x, w), 3).at(0), 1, 3 * 16, 24, 40, false, false);
  NodeId k = b.input("k", {DType::f32, {-1, 16, 24}});
  NodeId scores = b.add("matmul", {x, k}, {{"transpose_b", true}});
  check_gemm(gemms_of(g, scores, 3).at(0), 3, 16, 24, 16, false, true);
  // The open dimension as K (a weight gradient x^T dy over the batch's rows).
  NodeId rows = b.input("rows", {DType::f32, {-1, 24}}), dy = b.input("dy", {DType::f32, {-1, 40}});
  check_gemm(gemms_of(g, b.add("matmul", {rows, dy}, {{"transpose_a", true}}), 5).at(0), 1, 24, 5, 40, true, false);
}

TEST_CASE("kiln gemms lists a training step's GEMMs, forward and backward") {
  auto r = kiln::test::run_kiln("gemms graphs/zoo/lenet5.json --train graphs/zoo/train/lenet5.json --batch 32 --json");
  REQUIRE(r.exit_code == 0);
  auto j = nlohmann::json::parse(r.output);
  CHECK(j.at("entry") == "train_step");
  CHECK(j.at("batch") == 32);
  int filter_grads = 0, input_grads = 0;
  double flops = 0;
  for (const auto& row : j.at("gemms")) {
    filter_grads += row.at("op") == "conv2d_backprop_filter";
    input_grads += row.at("op") == "conv2d_backprop_input";
    flops += 2.0 * row.at("count").get<double>() * row.at("m").get<double>() * row.at("k").get<double>() *
             row.at("n").get<double>();
    if (row.at("node") == "c1/conv2d") {  // 5x5 windows of 1 channel, 6 filters, 28x28 same
      CHECK(row.at("m") == 32 * 28 * 28);
      CHECK(row.at("k") == 25);
      CHECK(row.at("n") == 6);
    }
  }
  CHECK(filter_grads == 2);
  CHECK(input_grads == 1);  // the first convolution's input needs no gradient
  CHECK(j.at("flops").get<double>() == doctest::Approx(flops));
  // Forward: 416,520 multiply-adds per example (kiln summary); the step three times that, less the
  // first convolution's input gradient (25088 x 25 x 6 at batch 32).
  CHECK(flops == 3 * 2.0 * 416520 * 32 - 2.0 * 25088 * 25 * 6);
  auto bad = kiln::test::run_kiln("gemms graphs/zoo/lenet5.json --entry train_step");
  CHECK(bad.exit_code == 1);
  CHECK(bad.output.find("needs --train SPEC") != std::string::npos);
}
