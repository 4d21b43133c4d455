// matmul: the one contraction primitive. Dense layers and (through im2col)
// convolutions reach the GEMM kernels through it.
#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

static void add_matmul_ops(OpRegistry& r) {
  r.add({.name = "matmul", .family = "matmul",
         .summary = "matrix product op(a) @ op(b), op = optional transpose",
         .inputs = {"a", "b"},
         .attrs = {{"transpose_a", AttrKind::Bool, false, false, "use a^T"},
                   {"transpose_b", AttrKind::Bool, false, false, "use b^T"}},
         .shape_rule = "a: [M,K] (or [K,M] with transpose_a), b: [K,N] (or [N,K]) -> [M,N]",
         .infer = [](const InferCtx& c) {
           const auto &a = c.in[0], &b = c.in[1];
           if (a.rank() != 2 || b.rank() != 2)
             throw OpError("matmul needs two matrices, got " + type_str(a) + " and " + type_str(b));
           if (!is_float(a.dtype) || a.dtype != b.dtype)
             throw OpError("matmul needs two float tensors of one dtype, got " + type_str(a) + " and " + type_str(b));
           bool ta = c.b("transpose_a"), tb = c.b("transpose_b");
           int64_t m = a.shape[ta ? 1 : 0], ka = a.shape[ta ? 0 : 1];
           int64_t kb = b.shape[tb ? 1 : 0], n = b.shape[tb ? 0 : 1];
           if (ka != kb)
             throw OpError("inner dimensions differ: a " + shape_str(a.shape) + (ta ? "^T" : "") + " has K=" +
                           (ka == kOpenDim ? std::string("?") : std::to_string(ka)) + ", b " + shape_str(b.shape) +
                           (tb ? "^T" : "") + " has K=" + (kb == kOpenDim ? std::string("?") : std::to_string(kb)));
           if (n == kOpenDim) throw OpError("the open batch dimension cannot be matmul's N");
           return TensorType{a.dtype, {m, n}};
         },
         .pattern = OpPattern::contraction,
         .algebra = {.transpose_flags = {"transpose_a", "transpose_b"}},
         .samples = {{{{{-1, 17}}, {{17, 33}}}},
                     {{{{17, 33}}, {{5, 17}}}, {{"transpose_a", true}, {"transpose_b", true}}},
                     {{{{-1, 17}}, {{-1, 5}}}, {{"transpose_a", true}}},
                     {{{{-1, 17}}, {{33, 17}}}, {{"transpose_b", true}}}}});
}

// ---- gradient rules (compiler/autodiff calls them) ----
// C = op(A) op(B). Every case is again a matmul with transpose flags, so the
// backward pass never materializes a transpose:
//   A   B  | dA              | dB
//   -   -  | dC B^T          | A^T dC
//   T   -  | B dC^T          | A dC
//   -   T  | dC B            | dC^T A
//   T   T  | B^T dC^T        | dC^T A^T
static void add_matmul_gradients(OpRegistry& r) {
  r.find_mut("matmul")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    const Attrs attrs = c.graph().node(c.node).attrs;
    bool ta = attrs.at("transpose_a"), tb = attrs.at("transpose_b");
    NodeId a = c.x[0], b = c.x[1], dc = c.dy;
    auto mm = [&](NodeId l, NodeId rr, bool tl, bool tr) {
      return c.b.add("matmul", {l, rr}, {{"transpose_a", tl}, {"transpose_b", tr}});
    };
    if (!ta && !tb) return {mm(dc, b, false, true), mm(a, dc, true, false)};
    if (ta && !tb) return {mm(b, dc, false, true), mm(a, dc, false, false)};
    if (!ta && tb) return {mm(dc, b, false, false), mm(dc, a, true, false)};
    return {mm(b, dc, true, true), mm(dc, a, true, true)};
  };
}

// ---- reference kernels (compiler/interp runs them) ----
// Transposes are materialized, then a plain i-k-j loop (rows of b streamed,
// so the MLP's 4x3072x1024 product stays fast without a BLAS).
static void add_matmul_reference(OpRegistry& r) {
  r.find_mut("matmul")->reference = [](interp::RefCtx& c) {
    using interp::Array;
    Array a = c.attrs.at("transpose_a").get<bool>() ? Array(xt::transpose(*c.in[0])) : *c.in[0];
    Array b = c.attrs.at("transpose_b").get<bool>() ? Array(xt::transpose(*c.in[1])) : *c.in[1];
    size_t m = a.shape()[0], k = a.shape()[1], n = b.shape()[1];
    c.out = Array::from_shape({m, n});
    c.out.fill(0.0);
    const double* pa = a.data();
    const double* pb = b.data();
    double* po = c.out.data();
    for (size_t i = 0; i < m; ++i)
      for (size_t p = 0; p < k; ++p) {
        double aip = pa[i * k + p];
        const double* brow = pb + p * n;
        double* orow = po + i * n;
        for (size_t j = 0; j < n; ++j) orow[j] += aip * brow[j];
      }
  };
}

// ---- lowering to loop IR (compiler/lower) ----
static void add_matmul_lowering(OpRegistry& r) {
  r.find_mut("matmul")->lower = [](lower::LowerCtx& c) {
    bool ta = c.attrs.at("transpose_a"), tb = c.attrs.at("transpose_b");
    c.gemm(c.in[0], ta, c.in[1], tb, c.out, std::string("matmul") + (ta ? " a^T" : "") + (tb ? " b^T" : ""));
  };
}

// One registration for the family: its ops, then their gradients, reference
// kernels and lowerings.
void register_matmul_family(OpRegistry& r) {
  add_matmul_ops(r);
  add_matmul_gradients(r);
  add_matmul_reference(r);
  add_matmul_lowering(r);
}

}  // namespace kiln
