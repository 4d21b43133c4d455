// matmul: the one contraction primitive. Dense layers and (through im2col)
// convolutions reach the GEMM kernels through it.
#include <algorithm>

#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"
#include "compiler/passes/graph_edit.h"

namespace kiln {

namespace {

// The leading (batch) dims of a rank >= 2 shape.
Shape batch_dims(const Shape& s) { return Shape(s.begin(), s.end() - 2); }

std::string dim_str(int64_t d) { return d == kOpenDim ? "?" : std::to_string(d); }

TensorType matmul_infer(const InferCtx& c) {
  const auto &a = c.in[0], &b = c.in[1];
  if (a.rank() < 2 || b.rank() < 2)
    throw OpError("matmul needs operands of rank 2 or more (matrices, or batches of them), got " + type_str(a) +
                  " and " + type_str(b));
  if (!is_float(a.dtype) || a.dtype != b.dtype)
    throw OpError("matmul needs two float tensors of one dtype, got " + type_str(a) + " and " + type_str(b));
  bool ta = c.b("transpose_a"), tb = c.b("transpose_b");
  const size_t ra = a.shape.size(), rb = b.shape.size();
  int64_t m = a.shape[ta ? ra - 1 : ra - 2], ka = a.shape[ta ? ra - 2 : ra - 1];
  int64_t kb = b.shape[tb ? rb - 1 : rb - 2], n = b.shape[tb ? rb - 2 : rb - 1];
  if (ka != kb)
    throw OpError("inner dimensions differ: a " + shape_str(a.shape) + (ta ? "^T" : "") + " has K=" + dim_str(ka) +
                  ", b " + shape_str(b.shape) + (tb ? "^T" : "") + " has K=" + dim_str(kb));
  if (n == kOpenDim) throw OpError("the open batch dimension cannot be matmul's N");
  if (c.b("sum_batch")) {
    // K runs down the rows of both operands, so the batch's rows are one longer K: a single GEMM.
    if (!ta || tb) throw OpError("sum_batch needs transpose_a and not transpose_b");
    if (ra < 3 || batch_dims(a.shape) != batch_dims(b.shape))
      throw OpError("sum_batch needs operands with the same batch axes, got " + shape_str(a.shape) + " and " +
                    shape_str(b.shape));
    return TensorType{a.dtype, {m, n}};
  }
  Shape out;
  try {
    out = broadcast_shapes(batch_dims(a.shape), batch_dims(b.shape));
  } catch (const OpError& e) {
    throw OpError("the batch dimensions of " + shape_str(a.shape) + " and " + shape_str(b.shape) +
                  " do not broadcast: " + e.what());
  }
  out.push_back(m);
  out.push_back(n);
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i] == kOpenDim)
      throw OpError("matmul of " + shape_str(a.shape) + " and " + shape_str(b.shape) + " would give " +
                    shape_str(out) + ": the open batch dimension must stay first");
  return TensorType{a.dtype, out};
}

}  // namespace

static void add_matmul_ops(OpRegistry& r) {
  r.add({.name = "matmul", .family = "matmul",
         .summary = "matrix product op(a) @ op(b), op = optional transpose of the last two axes; leading axes are "
                    "batch axes, numpy-broadcast (one batched GEMM)",
         .inputs = {"a", "b"},
         .attrs = {{"transpose_a", AttrKind::Bool, false, false, "use a^T (its last two axes swapped)"},
                   {"transpose_b", AttrKind::Bool, false, false, "use b^T (its last two axes swapped)"},
                   {"sum_batch", AttrKind::Bool, false, false,
                    "sum the products over the batch axes (both operands have them; with transpose_a, not "
                    "transpose_b): a weight gradient over [batch, tokens, features] as one GEMM"}},
         .shape_rule = "a: [..., M, K] (or [..., K, M] with transpose_a), b: [..., K, N] (or [..., N, K]) -> "
                       "[broadcast(a's and b's leading dims)..., M, N]",
         .infer = matmul_infer,
         .pattern = OpPattern::contraction,
         .algebra = {.transpose_flags = {"transpose_a", "transpose_b"},
                     .scales_through_input = [](const Node& n) { return n.attrs.value("transpose_b", false) ? -1 : 1; },
                     .linear_inputs = {0, 1}},
         .samples = {{{{{-1, 17}}, {{17, 33}}}},
                     {{{{17, 33}}, {{5, 17}}}, {{"transpose_a", true}, {"transpose_b", true}}},
                     {{{{-1, 17}}, {{-1, 5}}}, {{"transpose_a", true}}},
                     {{{{-1, 17}}, {{33, 17}}}, {{"transpose_b", true}}},
                     // batched: shared b, equal batches, broadcast both ways, transposes on batches
                     {{{{-1, 4, 8, 16}}, {{16, 8}}}},
                     {{{{-1, 4, 8, 16}}, {{-1, 4, 16, 8}}}},
                     {{{{-1, 3, 5, 17}}, {{-1, 3, 33, 17}}}, {{"transpose_b", true}}},
                     {{{{2, 1, 5, 7}}, {{3, 9, 7}}}, {{"transpose_b", true}}},
                     {{{{3, 7, 5}}, {{7, 6}}}, {{"transpose_a", true}}},
                     {{{{3, 5, 7}}, {{6, 7}}}, {{"transpose_b", true}}},
                     {{{{2, 7}}, {{-1, 7, 3}}}},
                     {{{{-1, 5, 7}}, {{-1, 5, 3}}}, {{"transpose_a", true}, {"sum_batch", true}}},
                     {{{{-1, 2, 5, 7}}, {{-1, 2, 5, 3}}}, {{"transpose_a", true}, {"sum_batch", true}}}}});
}

// ---- gradient rules (compiler/autodiff calls them) ----
// C = op(A) op(B). Every case is again a matmul with transpose flags, so the
// backward pass never materializes a transpose:
//   A   B  | dA              | dB
//   -   -  | dC B^T          | A^T dC
//   T   -  | B dC^T          | A dC
//   -   T  | dC B            | dC^T A
//   T   T  | B^T dC^T        | dC^T A^T
// With batches, each is a batched matmul summed back over the batch axes an
// operand was broadcast along; a matrix shared by a batch (dense layers on
// [batch, tokens, features]) gets its gradient from one flat 2-D product.
static void add_matmul_gradients(OpRegistry& r) {
  r.find_mut("matmul")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    const Attrs attrs = c.graph().node(c.node).attrs;
    bool ta = attrs.at("transpose_a"), tb = attrs.at("transpose_b");
    NodeId a = c.x[0], b = c.x[1], dc = c.dy;
    const Shape as = c.type(a).shape, bs = c.type(b).shape;
    auto mm = [&](NodeId l, NodeId rr, bool tl, bool tr) {
      return c.b.add("matmul", {l, rr}, {{"transpose_a", tl}, {"transpose_b", tr}});
    };
    // Sum_b a_b^T b_b: each batch's gradient reads the shared [M, N] cotangent.
    if (attrs.value("sum_batch", false)) return {mm(b, dc, false, true), mm(a, dc, false, false)};
    NodeId da, db;
    if (!ta && !tb) da = mm(dc, b, false, true), db = mm(a, dc, true, false);
    else if (ta && !tb) da = mm(b, dc, false, true), db = mm(a, dc, false, false);
    else if (!ta && tb) da = mm(dc, b, false, false), db = mm(dc, a, true, false);
    else da = mm(b, dc, true, true), db = mm(dc, a, true, true);
    if (bs.size() == 2 && as.size() > 2 && !ta) {
      // A matrix shared by the batch: its gradient sums over every batch's
      // rows, one GEMM (not a batch of products summed afterwards).
      auto summed = [&](NodeId l, NodeId rr) {
        return c.b.add("matmul", {l, rr}, {{"transpose_a", true}, {"transpose_b", false}, {"sum_batch", true}});
      };
      db = tb ? summed(dc, a) : summed(a, dc);
    }
    return {c.b.reduce_to_shape(da, as), c.b.reduce_to_shape(db, bs)};
  };
}

// ---- reference kernels (compiler/interp runs them) ----
// Per output batch index, the operands' matrices (a size-1 batch axis reads
// matrix 0 along it), then a plain i-k-j loop.
static void add_matmul_reference(OpRegistry& r) {
  r.find_mut("matmul")->reference = [](interp::RefCtx& c) {
    using interp::Array;
    const Array &a = *c.in[0], &b = *c.in[1];
    const bool ta = c.attrs.at("transpose_a").get<bool>(), tb = c.attrs.at("transpose_b").get<bool>();
    const bool sum_batch = c.attrs.value("sum_batch", false);
    const size_t ra = a.dimension(), rb = b.dimension();
    const size_t ar = a.shape()[ra - 2], ac = a.shape()[ra - 1], br = b.shape()[rb - 2], bc = b.shape()[rb - 1];
    const size_t m = ta ? ac : ar, k = ta ? ar : ac, n = tb ? br : bc;
    std::vector<size_t> out_shape;
    const size_t rank = std::max(ra, rb);
    for (size_t i = 0; i + 2 < rank; ++i) {
      size_t da = i + ra < rank ? 1 : a.shape()[i + ra - rank];
      size_t db = i + rb < rank ? 1 : b.shape()[i + rb - rank];
      out_shape.push_back(da == 1 ? db : da);
    }
    size_t batches = 1;
    for (size_t d : out_shape) batches *= d;
    const std::vector<size_t> batch_shape = out_shape;
    if (sum_batch) out_shape.clear();  // every product adds into one [M, N]
    out_shape.push_back(m);
    out_shape.push_back(n);
    c.out = Array::from_shape(out_shape);
    c.out.fill(0.0);
    // The matrix of x (rank rx) that output batch `ob` reads.
    auto matrix_of = [&](const Array& x, size_t rx, size_t ob) {
      size_t offset = 0, stride = x.shape()[rx - 2] * x.shape()[rx - 1];
      for (size_t i = rank - 2; i-- > 0;) {
        size_t idx = ob % batch_shape[i];
        ob /= batch_shape[i];
        if (i + rx < rank) continue;
        size_t dim = x.shape()[i + rx - rank];
        if (dim != 1) offset += idx * stride;
        stride *= dim;
      }
      return x.data() + offset;
    };
    for (size_t ob = 0; ob < batches; ++ob) {
      const double *pa = matrix_of(a, ra, ob), *pb = matrix_of(b, rb, ob);
      double* po = c.out.data() + (sum_batch ? 0 : ob * m * n);
      for (size_t i = 0; i < m; ++i)
        for (size_t p = 0; p < k; ++p) {
          double aip = ta ? pa[p * ac + i] : pa[i * ac + p];
          double* orow = po + i * n;
          if (tb)
            for (size_t j = 0; j < n; ++j) orow[j] += aip * pb[j * bc + p];
          else
            for (size_t j = 0; j < n; ++j) orow[j] += aip * pb[p * bc + j];
        }
    }
  };
}

// ---- lowering to loop IR (compiler/lower) ----
// A product of matrices in the last two axes (rank-2 or batched) learns the
// causal structure around it from the ops: op(A) zero past its diagonal (a
// causal softmax's output, or its transpose), C read by nothing above its
// diagonal (every reader a causal softmax or its gradient, and not handed out).
static void mark_causal_structure(const lower::LowerCtx& c, lower::GemmSpec& g, bool ta) {
  using Triangle = lower::GemmSpec::Triangle;
  if (zero_above_diagonal(c.graph, c.node.inputs[0])) g.a_triangle = ta ? Triangle::upper : Triangle::lower;
  if (handed_out(c.graph, c.id)) return;
  bool any = false;
  for (const Node& u : c.graph.nodes)
    for (size_t i = 0; i < u.inputs.size(); ++i) {
      if (u.inputs[i] != c.id) continue;
      const OpDef& ud = *OpRegistry::get().find(u.op);
      if (!ud.reads_on_and_below_diagonal || !ud.reads_on_and_below_diagonal(u, static_cast<int>(i))) return;
      any = true;
    }
  g.c_lower_read = any;
}

// One GEMM kernel in every case: matrices directly; a batch whose b is one
// shared matrix as one tall product (the batch's rows stacked); other
// batches as a batched GEMM, where an operand broadcast along some batch
// axes but not all is first copied out to the full batch.
static void add_matmul_lowering(OpRegistry& r) {
  using namespace lower;
  r.find_mut("matmul")->lower = [](LowerCtx& c) {
    const bool ta = c.attrs.at("transpose_a"), tb = c.attrs.at("transpose_b");
    const std::string what = std::string("matmul") + (ta ? " a^T" : "") + (tb ? " b^T" : "");
    const BufRef &a = c.in[0], &b = c.in[1], &out = c.out;
    if (c.attrs.value("sum_batch", false)) {
      // [batch..., K, M]^T [batch..., K, N]: the batch's rows stacked are one K.
      E rows = 1;
      for (int i = 0; i + 1 < a.rank(); ++i) rows = rows * a.dim(i);
      c.gemm({a.id, a.dtype, {kOpenDim, a.shape.back()}}, true, {b.id, b.dtype, {kOpenDim, b.shape.back()}}, false,
             out, what + " summed over the batch (its rows as one K)");
      c.kernels.back().gemm.k = rows.p;
      return;
    }
    if (out.rank() == 2) {
      c.gemm(a, ta, b, tb, out, what);
      return mark_causal_structure(c, c.kernels.back().gemm, ta);
    }
    auto last2 = [](const BufRef& x) { return BufRef{x.id, x.dtype, {x.shape[x.shape.size() - 2], x.shape.back()}}; };
    const Shape out_batch = batch_dims(out.shape);
    auto all_ones = [](const Shape& s) { return std::all_of(s.begin(), s.end(), [](int64_t d) { return d == 1; }); };
    const int64_t n = out.shape.back(), k = ta ? a.shape[a.shape.size() - 2] : a.shape.back();
    if (all_ones(batch_dims(b.shape)) && !ta) {
      E rows = 1;
      for (int i = 0; i + 1 < a.rank(); ++i) rows = rows * a.dim(i);
      c.gemm({a.id, a.dtype, {kOpenDim, k}}, false, last2(b), tb, {out.id, out.dtype, {kOpenDim, n}},
             what + " (the batch's rows as one product)");
      c.kernels.back().gemm.m = rows.p;
      return;
    }
    // Each operand's matrices: shared (stride 0), one per product, or copied out.
    E products = 1;
    for (size_t i = 0; i < out_batch.size(); ++i) products = products * out.dim(static_cast<int>(i));
    auto operand = [&](const BufRef& x, const char* name) -> std::pair<BufRef, int64_t> {
      Shape xb = batch_dims(x.shape);
      xb.insert(xb.begin(), out_batch.size() - xb.size(), 1);
      const int64_t size = x.shape[x.shape.size() - 2] * x.shape.back();
      if (all_ones(xb)) return {last2(x), 0};
      if (xb == out_batch) return {last2(x), size};
      Shape full = out_batch;
      full.push_back(x.shape[x.shape.size() - 2]);
      full.push_back(x.shape.back());
      BufRef copy{c.scratch(std::string(name) + " of " + c.node.name + " broadcast to the batch", x.dtype, full),
                  x.dtype, full};
      auto kb = c.kernel("matmul: " + std::string(name) + " broadcast to the batch " + shape_str(out_batch));
      kb.loops(full, [&](const std::vector<E>& idx) {
        std::vector<E> src;
        const size_t lead = full.size() - x.shape.size();
        for (size_t i = lead; i < full.size(); ++i) src.push_back(x.shape[i - lead] == 1 ? E(0) : idx[i]);
        kb.store(copy, copy.offset(idx), kb.load(x, x.offset(src)));
      }, true);
      return {last2(copy), size};
    };
    auto [am, stride_a] = operand(a, "a");
    auto [bm, stride_b] = operand(b, "b");
    c.gemm(am, ta, bm, tb, last2(out), what + " x " + shape_str(out_batch) + " products");
    GemmSpec& g = c.kernels.back().gemm;
    g.batch = products.p;
    g.stride_a = stride_a, g.stride_b = stride_b, g.stride_c = out.shape[out.shape.size() - 2] * n;
    mark_causal_structure(c, g, ta);
  };
}

// One registration for the family: its ops, then their gradients, reference
// kernels and lowerings.
void register_matmul_family(OpRegistry& r) {
  add_matmul_ops(r);
  // One GEMM per product of the batch; a matrix B shared by a batch of
  // untransposed A's is one GEMM over all their rows, as a dense layer on
  // [batch, tokens, features] runs.
  r.find_mut("matmul")->gemms = [](const Graph& g, const Node& n, int64_t batch) {
    const Shape& a = g.node(n.inputs[0]).type.shape;
    const Shape& b = g.node(n.inputs[1]).type.shape;
    const bool ta = n.attrs.value("transpose_a", false), tb = n.attrs.value("transpose_b", false);
    auto concrete = [batch](int64_t d) { return d == kOpenDim ? batch : d; };
    const size_t rank = n.type.shape.size();  // >= 2
    const int64_t k = concrete(a[a.size() - (ta ? 2 : 1)]);
    const int64_t m = concrete(n.type.shape[rank - 2]), cols = n.type.shape[rank - 1];
    int64_t products = 1;
    for (size_t i = 0; i + 2 < rank; ++i) products *= concrete(n.type.shape[i]);
    if (n.attrs.value("sum_batch", false)) {  // the batch's rows are K
      int64_t rows = 1;
      for (size_t i = 0; i + 1 < a.size(); ++i) rows *= concrete(a[i]);
      return std::vector<GemmShape>{{.m = m, .k = rows, .n = cols, .trans_a = true}};
    }
    if (b.size() <= 2 && !ta)
      return std::vector<GemmShape>{{.m = products * m, .k = k, .n = cols, .trans_b = tb}};
    return std::vector<GemmShape>{{.count = products, .m = m, .k = k, .n = cols, .trans_a = ta, .trans_b = tb}};
  };
  add_matmul_gradients(r);
  add_matmul_reference(r);
  add_matmul_lowering(r);
  // Along a's contracted axis; with sum_batch along every axis of a.
  r.find_mut("matmul")->mixes_along = [](const Graph& g, const Node& n) {
    const int rank = g.node(n.inputs[0]).type.rank();
    std::vector<int> axes{std::max(0, n.attrs.value("transpose_a", false) ? rank - 2 : rank - 1)};
    if (n.attrs.value("sum_batch", false))
      for (int a = 0; a + 1 < rank; ++a) axes.push_back(a);
    return axes;
  };
}

}  // namespace kiln
