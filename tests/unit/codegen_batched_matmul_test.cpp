// Batched matmul: one GEMM kernel for a whole batch of products (attention's
// shapes), on the thread pool and with an epilogue, against the interpreter;
// bit-identical on 1, 2 and 3 threads.
#include <doctest/doctest.h>

#include "codegen_helpers.h"
#include "compiler/lower/lower_program.h"

using namespace kiln;
using codegen_test::JitCase;
using codegen_test::run_on_threads;

namespace {

int gemm_kernels(const Graph& g, const std::string& out, std::string* shown = nullptr) {
  lower::Program p = lower::lower_program("bmm", {{"predict", &g, {out}, {}}}, {.max_batch = 8});
  int n = 0;
  for (int k : p.entry("predict")->kernels) {
    const lower::Kernel& kernel = p.kernels[static_cast<size_t>(k)];
    if (kernel.kind == lower::KernelKind::Gemm) ++n;
    if (shown) *shown += lower::print_kernel(p, kernel);
  }
  return n;
}

}  // namespace

TEST_CASE("codegen: batched matmul at attention shapes is one gemm kernel, parallel, with its epilogue") {
  JitCase t(3, 4);
  // Scores q k^T / sqrt(d) for 4 heads, 33 tokens, d = 16; then the weighted values.
  NodeId q = t.input("q", {-1, 4, 33, 16}), k = t.input("k", {-1, 4, 33, 16}), v = t.input("v", {-1, 4, 33, 16});
  NodeId scores = t.op("matmul", {q, k}, {{"transpose_b", true}});
  NodeId scaled = t.op("mul", {scores, t.b.scalar_like(0.25, scores)});
  NodeId attn = t.op("softmax", {scaled});
  t.out("scaled", scaled);
  t.out("context", t.op("matmul", {attn, v}));
  // A shared weight matrix over [batch, tokens, features], and a broadcast of both operands.
  NodeId w = t.input("w", {16, 24});
  t.out("projected", t.op("matmul", {v, w}));
  NodeId left = t.input("left", {2, 1, 9, 7}), right = t.input("right", {3, 7, 5});
  t.out("crossed", t.op("matmul", {left, right}));
  t.check(2e-5);

  std::string shown;
  CHECK(gemm_kernels(t.g, "scaled", &shown) == 1);
  INFO(shown);
  CHECK(shown.find("gemm [(N * 4) products") != std::string::npos);  // one kernel for the batch
  CHECK(shown.find("epilogue") != std::string::npos);         // the scale runs on each block of the product
  CHECK(gemm_kernels(t.g, "projected") == 1);
}

TEST_CASE("codegen: batched matmul on the thread pool: bit-identical on 1, 2 and 3 threads") {
  JitCase t(8, 8);
  NodeId a = t.input("a", {-1, 16, 64, 32}), b = t.input("b", {-1, 16, 32, 48});
  t.out("c", t.op("matmul", {a, b}));
  auto cp = codegen::compile_entries("bmm_threads", {{"eval_step", &t.g, {"c"}, {}}}, {.max_batch = 8});
  auto runs = run_on_threads(*cp, "eval_step", 8, t.feeds);
  const auto& one = runs[0].at("c").data;
  REQUIRE(one.size() == 8u * 16 * 64 * 48);
  // The last product's last element against a sum written out here.
  const auto &xa = t.feeds.at("a").data, &xb = t.feeds.at("b").data;
  const size_t p = 8 * 16 - 1;
  double last = 0;
  for (size_t kk = 0; kk < 32; ++kk) last += xa[p * 64 * 32 + 63 * 32 + kk] * xb[p * 32 * 48 + kk * 48 + 47];
  CHECK(one.back() == doctest::Approx(last).epsilon(1e-5));
  for (size_t r = 1; r < runs.size(); ++r) CHECK(runs[r].at("c").data == one);
}

TEST_CASE("matmul shape rule: batches broadcast, and the errors name the shapes") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {-1, 4, 8, 16}});
  CHECK(b.type(b.add("matmul", {x, b.input("w", {DType::f32, {16, 8}})})).shape == Shape{-1, 4, 8, 8});
  CHECK(b.type(b.add("matmul", {x, b.input("y", {DType::f32, {-1, 4, 16, 8}})})).shape == Shape{-1, 4, 8, 8});
  CHECK_THROWS_WITH_AS(b.add("matmul", {x, b.input("z", {DType::f32, {3, 16, 8}})}),
                       doctest::Contains("do not broadcast"), std::exception);
  CHECK_THROWS_WITH_AS(b.add("matmul", {x, b.input("u", {DType::f32, {17, 8}})}),
                       doctest::Contains("inner dimensions differ"), std::exception);
  CHECK_THROWS_WITH_AS(b.add("matmul", {b.input("m", {DType::f32, {-1, 7}}), b.input("n", {DType::f32, {2, 7, 3}})}),
                       doctest::Contains("must stay first"), std::exception);
}
