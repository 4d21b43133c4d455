// Causal attention's products skip what causality makes zero or unread
// (GemmSpec::a_triangle, c_lower_read): the scores above the diagonal, which
// the causal softmax never reads, and the terms of P, dS and their transposes
// past the diagonal, which are zero. The results are the same bits as the
// products computing every term (KILN_NO_TRIANGLES=1) and match the
// interpreter, at context lengths that cut the register tiles unevenly and
// past one depth block (where the products compute every term).
#include <doctest/doctest.h>

#include <cstdlib>

#include "compiler/codegen/check_numerics.h"
#include "compiler/codegen/codegen.h"
#include "compiler/lower/lower_program.h"
#include "tests/unit/codegen_helpers.h"

using namespace kiln;
using Triangle = lower::GemmSpec::Triangle;

namespace {

// Attention's forward and backward products for one head, written as the
// autodiff writes them: scores, P, O = P V; dP = dO V^T, dS = softmax_grad * scale,
// dQ = dS K, dK = dS^T Q, dV = P^T dO.
void attention(codegen_test::JitCase& c, int64_t t, int64_t d) {
  NodeId q = c.input("q", {kOpenDim, t, d}), k = c.input("k", {kOpenDim, t, d});
  NodeId v = c.input("v", {kOpenDim, t, d}), d_o = c.input("d_o", {kOpenDim, t, d});
  NodeId scores = c.op("matmul", {q, k}, {{"transpose_b", true}});
  NodeId p = c.op("softmax", {scores}, {{"causal", true}});
  c.out("o", c.op("matmul", {p, v}));
  NodeId dp = c.op("matmul", {d_o, v}, {{"transpose_b", true}});
  NodeId ds = c.op("mul", {c.op("softmax_grad", {p, dp}, {{"causal", true}}), c.b.constant(0.25)});
  c.out("dq", c.op("matmul", {ds, k}));
  c.out("dk", c.op("matmul", {ds, q}, {{"transpose_a", true}}));
  c.out("dv", c.op("matmul", {p, d_o}, {{"transpose_a", true}}));
}

}  // namespace

TEST_CASE("causal products: skipped tiles and terms give the same bits as every term, and the interpreter's values") {
  // 45: tiles of 6, 8, 12 or 16 rows end mid-tile at the diagonal; 300: one
  // depth block of 300; 330: two blocks of 165 (every term computed). Heads
  // of 16: A (P, dS) and A^T read in place; of 100: A packed (four panels or more).
  for (auto [t, d] : {std::pair<int64_t, int64_t>{45, 16}, {300, 16}, {330, 16}, {45, 100}}) {
    INFO("context " << t << ", head " << d);
    codegen_test::JitCase c(2, 2);
    attention(c, t, d);
    // The structure each product learns from the ops around it.
    auto cp = codegen::compile_entries(c.g.name, {{"eval_step", &c.g, {"o", "dq", "dk", "dv"}, {}}}, {.max_batch = 2});
    int lower = 0, upper = 0, c_lower = 0;
    for (const lower::Kernel& k : cp->loops().kernels) {
      if (k.kind != lower::KernelKind::Gemm) continue;
      lower += k.gemm.a_triangle == Triangle::lower;
      upper += k.gemm.a_triangle == Triangle::upper;
      c_lower += k.gemm.c_lower_read;
    }
    CHECK(lower == 2);    // P V, dS K
    CHECK(upper == 2);    // P^T dO, dS^T Q
    CHECK(c_lower == 2);  // the scores and dP: read by the causal softmax and its gradient alone
    const std::string ir = codegen::llvm_ir_text(cp->loops(), "", {.optimize = false});
    CHECK((ir.find("@kiln_gemm_ukr_at_") != std::string::npos) == (d == 16));  // dK, dV (O, dQ: A's rows, ukr_win_)
    auto skipping = c.check(2e-5);
    setenv("KILN_NO_TRIANGLES", "1", 1);
    auto every_term = c.check(2e-5);
    unsetenv("KILN_NO_TRIANGLES");
    for (const char* out : {"o", "dq", "dk", "dv"}) {
      INFO("output " << out);
      const auto &x = skipping.at(out).data, &y = every_term.at(out).data;
      REQUIRE(x.size() == y.size());
      size_t differ = 0;
      for (size_t i = 0; i < x.size(); ++i) differ += x[i] != y[i];
      CHECK(differ == 0);
    }
  }
}

TEST_CASE("causal products: a product read elsewhere too, or handed out, computes its whole result") {
  codegen_test::JitCase c(2, 2);
  NodeId q = c.input("q", {kOpenDim, 20, 8}), k = c.input("k", {kOpenDim, 20, 8});
  NodeId scores = c.op("matmul", {q, k}, {{"transpose_b", true}});
  c.out("p", c.op("softmax", {scores}, {{"causal", true}}));
  c.out("scores_sum", c.op("reduce_sum", {scores}));  // reads above the diagonal too
  NodeId handed = c.op("matmul", {k, q}, {{"transpose_b", true}});
  c.out("handed", handed);
  c.out("p2", c.op("softmax", {handed}, {{"causal", true}}));
  auto cp = codegen::compile_entries(c.g.name, {{"eval_step", &c.g, {"p", "scores_sum", "handed", "p2"}, {}}},
                                     {.max_batch = 2});
  for (const lower::Kernel& kn : cp->loops().kernels)
    if (kn.kind == lower::KernelKind::Gemm) CHECK_FALSE(kn.gemm.c_lower_read);
  c.check(2e-5);
}

TEST_CASE("causal products: check-numerics compares what they compute, not the half above the diagonal") {
  codegen_test::JitCase c(2, 2);
  attention(c, 45, 16);
  std::vector<std::string> outs = {"o", "dq", "dk", "dv"};
  auto cp = codegen::compile_entries(c.g.name, {{"eval_step", &c.g, outs, {}}}, {.max_batch = 2});
  Program prog(cp->info());
  auto report = codegen::check_numerics(*cp, prog, "eval_step", 2, c.feeds);
  INFO(report.message);
  CHECK(report.ok);
  CHECK(report.nodes_checked > 0);
}
