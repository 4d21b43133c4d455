// op(B) packed once per parameter load (GemmSpec::packed_b): in an entry
// that writes no persistent tensor, a gemm whose B is a param (or a value of
// params alone) reads panels a kernel of its own packed when the params
// changed, instead of packing B on every call. Checked against the
// interpreter at sizes that cut K into several depth blocks and N into
// several column blocks, with column splits across threads, and after new
// params are written (the panels must follow them).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>

#include "compiler/codegen/programs.h"
#include "tests/unit/codegen_helpers.h"
#include "tests/unit/test_util.h"

using namespace kiln;
using namespace kiln::codegen_test;

namespace {

struct PackCount {
  int packs = 0, packed_products = 0, products = 0;
};

PackCount count_packs(const lower::Program& p, const std::string& entry) {
  PackCount c;
  for (int k : p.entry(entry)->kernels) {
    const lower::Kernel& kernel = p.kernels[static_cast<size_t>(k)];
    if (kernel.kind != lower::KernelKind::Gemm) continue;
    if (kernel.gemm.packs_b) {
      ++c.packs;
      CHECK(kernel.once_per_params);
      CHECK(lower::print_kernel(p, kernel).find("pack ") != std::string::npos);
    } else {
      ++c.products;
      if (kernel.gemm.packed_b >= 0) ++c.packed_products;
    }
  }
  return c;
}

// y_i = x @ w_i for (K, N) that give one or several depth blocks and column
// blocks; w_t enters transposed (a value of params alone, itself prepared).
void add_products(JitCase& t) {
  NodeId x = t.input("x", {-1, 700});
  const std::pair<int64_t, int64_t> sizes[] = {{700, 37}, {700, 1000}, {700, 1500}};
  for (auto [k, n] : sizes) {
    NodeId w = t.param("w" + std::to_string(n), {k, n});
    t.out("y" + std::to_string(n), t.op("matmul", {x, w}));
  }
  NodeId wt = t.param("wt", {45, 700});
  t.out("yt", t.op("matmul", {x, t.op("transpose", {wt}, {{"perm", {1, 0}}})}));
}

}  // namespace

TEST_CASE("gemm prepack: a param's B is packed once per parameter load and gives the interpreter's product") {
  for (int64_t batch : {1, 5, 40}) {  // one row (the columns split), a few, many
    CAPTURE(batch);
    JitCase t(batch, 64);
    add_products(t);
    t.check(1e-5);
    std::vector<std::string> names;
    for (auto& [n, id] : t.g.outputs) names.push_back(n);
    auto cp = codegen::compile_entries(t.g.name, {{"eval_step", &t.g, names, {}}}, {.max_batch = 64});
    const PackCount c = count_packs(cp->loops(), "eval_step");
    CHECK(c.products == 4);
    CHECK(c.packs == 4);
    CHECK(c.packed_products == 4);
    // The same bits on 1, 2 and 3 threads.
    auto runs = run_on_threads(*cp, "eval_step", batch, t.feeds);
    for (size_t r = 1; r < runs.size(); ++r)
      for (auto& name : names) CHECK(runs[r].at(name).data == runs[0].at(name).data);
  }
}

TEST_CASE("gemm prepack: new params are packed again before the next call") {
  JitCase t(3, 8);
  add_products(t);
  std::vector<std::string> names;
  for (auto& [n, id] : t.g.outputs) names.push_back(n);
  auto cp = codegen::compile_entries(t.g.name, {{"eval_step", &t.g, names, {}}}, {.max_batch = 8});
  Program prog(cp->info());
  auto first = codegen::run_entry(prog, "eval_step", 3, t.feeds);
  // Other weights, written into the same program: every product follows them.
  for (auto& [name, v] : t.feeds)
    if (name != "x") v = t.random(DType::f32, v.shape);
  auto second = codegen::run_entry(prog, "eval_step", 3, t.feeds);
  auto want = interp::Interpreter(t.g, interp::Precision::f32).run(t.feeds, names);
  for (auto& name : names) {
    CAPTURE(name);
    CHECK(second.at(name).data != first.at(name).data);
    double max_ref = 0, max_diff = 0;
    for (size_t i = 0; i < want.at(name).data.size(); ++i) {
      max_ref = std::max(max_ref, std::fabs(want.at(name).data[i]));
      max_diff = std::max(max_diff, std::fabs(second.at(name).data[i] - want.at(name).data[i]));
    }
    CHECK(max_diff <= 1e-5 * max_ref);
  }
}

TEST_CASE("gemm prepack: a product of two inputs, or in a step that updates its params, packs B per call") {
  JitCase t(4, 8);
  NodeId a = t.input("a", {-1, 300});
  NodeId b = t.input("b", {300, 50});
  t.out("y", t.op("matmul", {a, b}));
  auto cp = codegen::compile_entries(t.g.name, {{"eval_step", &t.g, {"y"}, {}}}, {.max_batch = 8});
  const PackCount c = count_packs(cp->loops(), "eval_step");
  CHECK(c.products == 1);
  CHECK(c.packs == 0);
  t.check(1e-5);
}

TEST_CASE("gemm prepack: a convolution's filter is packed once in predict") {
  test::ScopedEnv windows("KILN_NO_WINOGRAD");  // the GEMM over windows (a Winograd filter's 36: winograd_test.cpp)
  JitCase t(2, 4);
  NodeId x = t.input("x", {-1, 9, 9, 24});
  NodeId w = t.param("w", {3, 3, 24, 40});
  t.out("y", t.op("conv2d", {x, w}, {{"padding", "same"}}));
  t.check(1e-5);
  auto cp = codegen::compile_entries(t.g.name, {{"eval_step", &t.g, {"y"}, {}}}, {.max_batch = 4});
  const PackCount c = count_packs(cp->loops(), "eval_step");
  CHECK(c.products == 1);
  CHECK(c.packs == 1);
  CHECK(c.packed_products == 1);
}

// A batch of products with transposed A's and one shared B (a param): the
// pack kernel chooses the product's tiles, hence its panels (AVX-512: 6 x 32
// for a transposed A, where a batch of plain matrices takes 6 x 64).
TEST_CASE("gemm prepack: a batch of transposed A's times a param packs the product's panels") {
  for (int bits : {256, 512}) {
    CAPTURE(bits);
    JitCase t(3, 4);
    NodeId a = t.input("a", {-1, 16, 24});
    t.out("y", t.op("matmul", {a, t.param("w", {16, 64})}, {{"transpose_a", true}}));
    t.check(1e-5, bits);
    auto cp = codegen::compile_entries(t.g.name, {{"eval_step", &t.g, {"y"}, {}}}, {.max_batch = 4});
    const PackCount c = count_packs(cp->loops(), "eval_step");
    CHECK(c.packs == 1);
    CHECK(c.packed_products == 1);
  }
}
