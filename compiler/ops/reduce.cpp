// Reductions over a set of axes: reduce_sum and reduce_max are primitives;
// reduce_mean is sum / count (count read at run time for the open dimension).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>

#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

// The sorted, de-duplicated axes an op reduces over (empty attr = every axis).
std::vector<int> reduction_axes(const Attrs& attrs, int rank) {
  std::vector<int> axes;
  for (int64_t a : attrs.at("axes").get<std::vector<int64_t>>()) axes.push_back(normalize_axis(a, rank));
  if (attrs.at("axes").empty())
    for (int i = 0; i < rank; ++i) axes.push_back(i);
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end()) throw OpError("an axis is listed twice");
  return axes;
}

static TensorType reduce_infer(const InferCtx& c) {
  if (c.in[0].dtype == DType::boolean) throw OpError("cannot reduce a bool tensor; cast it first");
  auto axes = reduction_axes(c.attrs, c.in[0].rank());
  bool keep = c.b("keepdims");
  Shape out;
  for (int i = 0; i < c.in[0].rank(); ++i) {
    bool reduced = std::find(axes.begin(), axes.end(), i) != axes.end();
    if (!reduced) out.push_back(c.in[0].shape[i]);
    else if (keep) out.push_back(1);
  }
  return {c.in[0].dtype, out};
}

static std::vector<AttrSpec> reduce_attrs() {
  return {{"axes", AttrKind::IntList, false, nlohmann::json::array(), "axes to reduce (negative counts from the end; empty = all)", {}, -64, 63},
          {"keepdims", AttrKind::Bool, false, false, "keep reduced axes as size 1"}};
}

// Every axis, one axis (negative), several with keepdims, the open batch axis.
static std::vector<OpSample> reduce_samples() {
  return {{{{{-1, 17}}}},
          {{{{-1, 17}}}, {{"axes", {-1}}}},
          {{{{-1, 3, 33}}}, {{"axes", {0, 2}}, {"keepdims", true}}},
          {{{{-1, 5}}}, {{"axes", {0}}}}};
}

static const char* kReduceRule = "x: S -> S without the reduced axes (or with them as 1 when keepdims)";

static void add_reduce_ops(OpRegistry& r) {
  r.add({.name = "reduce_sum", .family = "reduce", .summary = "sum over axes", .inputs = {"x"},
         .attrs = reduce_attrs(), .shape_rule = kReduceRule, .infer = reduce_infer,
         .pattern = OpPattern::reduction,
         .inlines_elementwise_input = true,
         .samples = reduce_samples()});
  r.find_mut("reduce_sum")->algebra.summed_axes = [](const Node& n, int input_rank) {
    return reduction_axes(n.attrs, input_rank);
  };
  r.add({.name = "reduce_max", .family = "reduce",
         .summary = "maximum over axes; the gradient goes to the first maximal element",
         .inputs = {"x"}, .attrs = reduce_attrs(), .shape_rule = kReduceRule, .infer = reduce_infer,
         .pattern = OpPattern::reduction,
         .kinks = Kinks::gradient_steps,
         .inlines_elementwise_input = true,
         // Its gradient does not reduce over the open batch dimension (see reduce_max_grad).
         .samples = {{{{{-1, 17}}}, {{"axes", {-1}}}},
                     {{{{-1, 3, 33}}}, {{"axes", {1, 2}}, {"keepdims", true}}},
                     {{{{5, 17}}}}}});
  r.add({.name = "reduce_prod", .family = "reduce",
         .summary = "product over axes (its gradient dy * y / x needs x != 0)",
         .inputs = {"x"}, .attrs = reduce_attrs(), .shape_rule = kReduceRule, .infer = reduce_infer,
         .pattern = OpPattern::reduction,
         .inlines_elementwise_input = true,
         .samples = {{{{{-1, 17}, 0.7, 1.3}}, {{"axes", {-1}}}},
                     {{{{-1, 3, 5}, 0.5, 1.5}}, {{"axes", {0, 2}}, {"keepdims", true}}},
                     {{{{5, 7}, -1.5, -0.5}}}}});
  r.add({.name = "reduce_mean", .family = "reduce", .summary = "mean over axes (composite: reduce_sum / element count)",
         .inputs = {"x"}, .attrs = reduce_attrs(), .shape_rule = kReduceRule,
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           NodeId x = in[0];
           auto axes = reduction_axes(a, b.type(x).rank());
           NodeId sum = b.add("reduce_sum", {x}, a);
           return b.add2("div", sum, b.count_along(x, axes));
         },
         .pattern = OpPattern::reduction,
         .samples = reduce_samples()});
  for (const char* name : {"reduce_sum", "reduce_max", "reduce_prod"})
    r.find_mut(name)->algebra.reduced_axes = [](const Node& n, int input_rank) { return reduction_axes(n.attrs, input_rank); };
}

// ---- gradient rules (compiler/autodiff calls them) ----
// dy with the reduced axes restored as size 1, so it broadcasts against x.
static NodeId restore_reduced_axes(GradCtx& c, const std::vector<int>& axes) {
  Shape keep = c.type(c.x[0]).shape;
  for (int a : axes) keep[static_cast<size_t>(a)] = 1;
  return c.type(c.dy).shape == keep ? c.dy : c.b.add("reshape", {c.dy}, {{"shape", keep}});
}

// reduce_max sends dy to the FIRST maximal element of each reduced group (the
// interpreter's reduce_max and argmax agree on "first"): the reduced axes are
// moved last and merged into one, argmax + one_hot mark the first maximum in
// row-major order, and the mask is moved back. Limit: the reduced axes must be
// static (one_hot needs a static depth), so reduce_max over the open batch
// dimension has no gradient; the error says so.
static std::vector<NodeId> reduce_max_grad(GradCtx& c) {
  GraphBuilder& b = c.b;
  const TensorType xt = c.type(c.x[0]);
  const int rank = xt.rank();
  auto axes = reduction_axes(c.graph().node(c.node).attrs, rank);
  if (rank == 0) return {c.dy};
  std::vector<int64_t> perm, kept_dims, reduced_dims;
  int64_t depth = 1;
  for (int i = 0; i < rank; ++i)
    if (std::find(axes.begin(), axes.end(), i) == axes.end()) {
      perm.push_back(i);
      kept_dims.push_back(xt.shape[static_cast<size_t>(i)]);
    }
  for (int a : axes) {
    int64_t d = xt.shape[static_cast<size_t>(a)];
    if (d == kOpenDim)
      throw OpError("the gradient of reduce_max over the open batch dimension is not supported (axis " +
                    std::to_string(a) + " of " + type_str(xt) + "); reduce over static axes only");
    perm.push_back(a);
    reduced_dims.push_back(d);
    depth *= d;
  }
  bool identity = true;
  for (size_t i = 0; i < perm.size(); ++i) identity = identity && perm[i] == static_cast<int64_t>(i);
  NodeId moved = identity ? c.x[0] : b.add("transpose", {c.x[0]}, {{"perm", perm}});
  Shape merged = kept_dims;
  merged.push_back(depth);
  NodeId rows = axes.size() == 1 ? moved : b.add("reshape", {moved}, {{"shape", merged}});
  NodeId first_max = b.add("argmax", {rows}, {{"axis", -1}});
  NodeId mask = b.add("one_hot", {first_max}, {{"depth", depth}, {"dtype", dtype_name(xt.dtype)}});
  Shape dy_shape = kept_dims;
  dy_shape.push_back(1);
  NodeId dy_col = c.type(c.dy).shape == dy_shape ? c.dy : b.add("reshape", {c.dy}, {{"shape", dy_shape}});
  NodeId routed = b.add2("mul", mask, dy_col);
  if (axes.size() != 1) {
    Shape unmerged = kept_dims;
    unmerged.insert(unmerged.end(), reduced_dims.begin(), reduced_dims.end());
    routed = b.add("reshape", {routed}, {{"shape", unmerged}});
  }
  if (identity) return {routed};
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
  return {b.add("transpose", {routed}, {{"perm", inverse}})};
}

static void add_reduce_gradients(OpRegistry& r) {
  r.find_mut("reduce_sum")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    auto axes = reduction_axes(c.graph().node(c.node).attrs, c.type(c.x[0]).rank());
    NodeId g = restore_reduced_axes(c, axes);
    const Shape xs = c.type(c.x[0]).shape;
    return {c.type(g).shape == xs ? g : c.b.add("broadcast", {g}, {{"shape", xs}})};
  };
  r.find_mut("reduce_max")->grad = reduce_max_grad;
  r.find_mut("reduce_prod")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    auto axes = reduction_axes(c.graph().node(c.node).attrs, c.type(c.x[0]).rank());
    NodeId g = restore_reduced_axes(c, axes);
    NodeId y = c.type(c.y).shape == c.type(g).shape ? c.y : c.b.add("reshape", {c.y}, {{"shape", c.type(g).shape}});
    return {c.b.add2("div", c.b.add2("mul", g, y), c.x[0])};
  };
}

// ---- reference kernels (compiler/interp runs them) ----
// Reduces x over `axes` by `combine`, starting from `init`: the reduced axes
// are walked with plain strides, so any set of axes (or none) works alike.
template <class Combine>
static void reduce_ref(interp::RefCtx& c, double init, Combine combine) {
  const interp::Array& x = *c.in[0];
  int rank = static_cast<int>(x.dimension());
  auto axes = reduction_axes(c.attrs, rank);
  std::vector<bool> reduced(static_cast<size_t>(rank), false);
  for (int a : axes) reduced[static_cast<size_t>(a)] = true;
  std::vector<size_t> out_shape;       // without the reduced axes
  std::vector<size_t> kept_shape;      // reduced axes as 1 (keepdims)
  for (int i = 0; i < rank; ++i) {
    size_t d = x.shape()[static_cast<size_t>(i)];
    if (!reduced[static_cast<size_t>(i)]) out_shape.push_back(d);
    kept_shape.push_back(reduced[static_cast<size_t>(i)] ? 1 : d);
  }
  interp::Array out = interp::Array::from_shape(kept_shape);
  out.fill(init);
  // Row-major walk over x; the output index drops the reduced coordinates.
  std::vector<size_t> idx(static_cast<size_t>(rank), 0), out_strides(static_cast<size_t>(rank), 0);
  size_t stride = 1;
  for (int i = rank - 1; i >= 0; --i) {
    out_strides[static_cast<size_t>(i)] = reduced[static_cast<size_t>(i)] ? 0 : stride;
    stride *= kept_shape[static_cast<size_t>(i)];
  }
  double* po = out.data();
  for (double v : x) {
    size_t o = 0;
    for (int i = 0; i < rank; ++i) o += idx[static_cast<size_t>(i)] * out_strides[static_cast<size_t>(i)];
    po[o] = combine(po[o], v);
    for (int i = rank - 1; i >= 0; --i) {
      if (++idx[static_cast<size_t>(i)] < x.shape()[static_cast<size_t>(i)]) break;
      idx[static_cast<size_t>(i)] = 0;
    }
  }
  if (!c.attrs.at("keepdims").get<bool>()) out.reshape(out_shape);
  c.out = std::move(out);
}

static void add_reduce_reference(OpRegistry& r) {
  r.find_mut("reduce_sum")->reference = [](interp::RefCtx& c) {
    reduce_ref(c, 0.0, [](double acc, double v) { return acc + v; });
  };
  r.find_mut("reduce_prod")->reference = [](interp::RefCtx& c) {
    reduce_ref(c, 1.0, [](double acc, double v) { return acc * v; });
  };
  r.find_mut("reduce_max")->reference = [](interp::RefCtx& c) {
    reduce_ref(c, -std::numeric_limits<double>::infinity(), [](double acc, double v) {
      return (v > acc || std::isnan(v)) ? v : acc;  // a NaN propagates
    });
  };
}

// ---- lowering to loop IR (compiler/lower) ----
// x's dims merged into runs that are all kept or all reduced; the innermost run
// of reduced dims sums into a local, the others accumulate into the output.
static void lower_reduction(lower::LowerCtx& c, lower::Op op) {
  using namespace lower;
  const BufRef& x = c.in[0];
  std::vector<int> axes = reduction_axes(c.attrs, x.rank());
  struct Run { bool reduced; E size, in_stride, out_stride; };
  std::vector<Run> runs;
  E out_stride = 1;
  for (int d = x.rank() - 1; d >= 0; --d) {
    bool red = std::find(axes.begin(), axes.end(), d) != axes.end();
    if (x.shape[d] == 1) continue;
    if (!runs.empty() && runs.back().reduced == red) {
      runs.back().size = runs.back().size * x.dim(d);
    } else {
      runs.push_back({red, x.dim(d), x.stride(d), red ? E(0) : out_stride});
    }
    if (!red) out_stride = out_stride * x.dim(d);
  }
  std::reverse(runs.begin(), runs.end());
  Scalar t = x.scalar();
  const bool is_max = op == Op::Max;
  E identity = is_max ? lit(is_float(t) ? -INFINITY : (t == Scalar::i32 ? INT32_MIN : INT64_MIN), t)
                      : lit(op == Op::Mul ? 1 : 0, t);
  auto combine = [&](E a, E b) { return is_max ? max(a, b) : op == Op::Mul ? a * b : a + b; };
  bool inner_reduced = !runs.empty() && runs.back().reduced;
  size_t outer_runs = inner_reduced ? runs.size() - 1 : runs.size();
  bool single_pass = true;  // every reduced run is the innermost one
  for (size_t i = 0; i < outer_runs; ++i) single_pass = single_pass && !runs[i].reduced;
  auto k = c.kernel(std::string(is_max ? "max" : op == Op::Mul ? "product" : "sum") + " over axes " +
                    c.attrs.at("axes").dump());
  bool parallel = !runs.empty() && !runs[0].reduced && numel(x.shape, c.max_batch()) >= kParallelMinElements &&
                  outer_runs > 0;
  if (!single_pass)
    k.loop("o", 0, c.out.size(), [&](E o) { k.store(c.out, o, identity); }, parallel);
  std::vector<E> in_off{E(0)}, out_off{E(0)};
  std::function<void(size_t)> level = [&](size_t d) {
    if (d == outer_runs) {
      E src = in_off.back(), dst = out_off.back();
      if (!inner_reduced) {
        k.store(c.out, dst, single_pass ? k.load(x, src) : combine(k.load(c.out, dst), k.load(x, src)));
        return;
      }
      const Run& red = runs.back();
      E acc = k.let("acc", identity);
      k.loop("r", 0, red.size, [&](E j) { k.set(acc, combine(acc, k.load(x, src + j * red.in_stride))); });
      k.store(c.out, dst, single_pass ? acc : combine(k.load(c.out, dst), acc));
      return;
    }
    const Run& run = runs[d];
    k.loop(run.reduced ? "r" : "i", 0, run.size, [&](E i) {
      in_off.push_back(in_off.back() + i * run.in_stride);
      out_off.push_back(out_off.back() + i * run.out_stride);
      level(d + 1);
      in_off.pop_back();
      out_off.pop_back();
    }, parallel && d == 0);
  };
  level(0);
}

static void add_reduce_lowering(OpRegistry& r) {
  using namespace lower;
  r.find_mut("reduce_sum")->lower = [](LowerCtx& c) { lower_reduction(c, Op::Add); };
  r.find_mut("reduce_max")->lower = [](LowerCtx& c) { lower_reduction(c, Op::Max); };
  r.find_mut("reduce_prod")->lower = [](LowerCtx& c) { lower_reduction(c, Op::Mul); };
}

// One registration for the family: its ops, then their gradients, reference
// kernels and lowerings.
void register_reduce_family(OpRegistry& r) {
  add_reduce_ops(r);
  add_reduce_gradients(r);
  add_reduce_reference(r);
  add_reduce_lowering(r);
}

}  // namespace kiln
