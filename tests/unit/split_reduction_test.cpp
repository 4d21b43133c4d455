// Split full reductions (compiler/lower/split_reduction.cpp): a long sum
// runs as parallel chunks folded in a fixed order. It matches the
// interpreter, is bit-identical on 1, 2 and 3 threads, and short sums stay
// serial.
#include <doctest/doctest.h>

#include "compiler/lower/split_reduction.h"
#include "tests/unit/codegen_helpers.h"

using namespace kiln;
using namespace kiln::codegen_test;

namespace {

int split_kernels(const lower::Program& p) {
  int n = 0;
  for (const lower::Kernel& k : p.kernels) n += k.comment.find("folded in order") != std::string::npos;
  return n;
}

}  // namespace

TEST_CASE("split reduction: a long sum of squares runs in chunks, equal on any thread count") {
  const int64_t n = 5 * lower::kSplitReductionChunk + 1000;  // the last chunk partial
  static_assert(5 * lower::kSplitReductionChunk + 1000 >= lower::kSplitReductionMin);
  JitCase t(2, 2);
  NodeId w = t.input("w", {n});
  NodeId v = t.input("v", {n});
  t.out("ss", t.op("reduce_sum", {t.op("mul", {w, w})}, {{"axes", nlohmann::json::array()}, {"keepdims", false}}));
  t.out("mx", t.op("reduce_max", {v}, {{"axes", nlohmann::json::array()}, {"keepdims", false}}));
  auto cp = codegen::compile_entries("split", {{"eval_step", &t.g, {"ss", "mx"}, {}}}, {.max_batch = 2});
  CHECK(split_kernels(cp->loops()) == 2);
  auto runs = run_on_threads(*cp, "eval_step", 2, t.feeds);
  for (size_t r = 1; r < runs.size(); ++r) {
    CHECK(runs[r].at("ss").data == runs[0].at("ss").data);
    CHECK(runs[r].at("mx").data == runs[0].at("mx").data);
  }
  double want = 0, mx = -1e300;
  for (double x : t.feeds.at("w").data) want += x * x;
  for (double x : t.feeds.at("v").data) mx = std::max(mx, x);
  CHECK(runs[0].at("ss").data[0] == doctest::Approx(want).epsilon(1e-5));
  CHECK(runs[0].at("mx").data[0] == mx);
  t.check(1e-5);
}

TEST_CASE("split reduction: sums shorter than the threshold stay one serial loop") {
  JitCase t(2, 2);
  NodeId w = t.input("w", {lower::kSplitReductionMin - 1});
  t.out("s", t.op("reduce_sum", {w}, {{"axes", nlohmann::json::array()}, {"keepdims", false}}));
  auto cp = codegen::compile_entries("serial", {{"eval_step", &t.g, {"s"}, {}}}, {.max_batch = 2});
  CHECK(split_kernels(cp->loops()) == 0);
  t.check(1e-5);
}
