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

TEST_CASE("split reduction: per-channel sums and maxima over every position split over rows, equal on any thread count") {
  // [N, 8, 8, 24] reduced over N, H and W: rows = 64 N (batch-dependent), 24 columns;
  // at batch 100, 6400 rows: chunks of 1365 rows, the last one partial.
  JitCase t(100, 128);
  NodeId x = t.input("x", {-1, 8, 8, 24});
  t.out("sum", t.op("reduce_sum", {t.op("mul", {x, x})}, {{"axes", {0, 1, 2}}}));
  t.out("max", t.op("reduce_max", {x}, {{"axes", {0, 1, 2}}}));
  t.check(1e-5);
  auto cp = codegen::compile_entries("split", {{"eval_step", &t.g, {"sum", "max"}, {}}}, {.max_batch = 128});
  int by_rows = 0;
  for (const lower::Kernel& k : cp->loops().kernels) by_rows += k.comment.find("rows split into chunks") != std::string::npos;
  CHECK(by_rows == 2);
  auto runs = run_on_threads(*cp, "eval_step", 100, t.feeds);
  for (size_t r = 1; r < runs.size(); ++r) {
    CHECK(runs[r].at("sum").data == runs[0].at("sum").data);
    CHECK(runs[r].at("max").data == runs[0].at("max").data);
  }
  // A small batch stays exact too (one chunk, partial).
  JitCase small(3, 128);
  NodeId xs = small.input("x", {-1, 8, 8, 24});
  small.out("sum", small.op("reduce_sum", {xs}, {{"axes", {0, 1, 2}}}));
  small.check(1e-5);
}
