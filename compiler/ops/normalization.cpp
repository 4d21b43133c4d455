// Normalization: batch_norm (batch statistics in training, running ones in
// inference, the running statistics updated by the train step), layer_norm,
// group_norm and instance_norm (the same in both modes). They decompose into
// reductions and elementwise ops, so their gradients come from autodiff;
// layer_norm into `normalize` (a row kernel with its own gradient) and gamma, beta.
#include <algorithm>

#include <cmath>

#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

namespace {

// [C] seen along `axis` of a rank-`rank` tensor: [C, 1, ..., 1] (numpy
// broadcasting aligns trailing axes).
NodeId along_axis(GraphBuilder& b, NodeId v, int axis, int rank) {
  const int trailing = rank - axis - 1;
  if (trailing == 0) return v;
  Shape s{b.type(v).shape[0]};
  s.insert(s.end(), static_cast<size_t>(trailing), 1);
  return b.add("reshape", {v}, {{"shape", s}});
}

// normalize's rows: the last `trailing_axes` axes, none of them the open batch axis.
TensorType checked_rows(const InferCtx& c, const char* what) {
  const TensorType& x = c.in[0];
  if (!is_float(x.dtype)) throw OpError(std::string(what) + " needs a float input, got " + type_str(x));
  const int64_t axes = c.i("trailing_axes");
  if (axes > x.rank()) throw OpError(std::string(what) + ": " + std::to_string(axes) + " trailing axes in " + type_str(x));
  for (int64_t i = x.rank() - axes; i < x.rank(); ++i)
    if (x.shape[static_cast<size_t>(i)] == kOpenDim)
      throw OpError(std::string(what) + ": a row cannot span the open batch axis of " + type_str(x));
  return x;
}

std::vector<int> all_but(int axis, int rank) {
  std::vector<int> axes;
  for (int i = 0; i < rank; ++i)
    if (i != axis) axes.push_back(i);
  return axes;
}

TensorType checked_norm(const InferCtx& c, int axis, const char* what) {
  const TensorType& x = c.in[0];
  if (!is_float(x.dtype)) throw OpError(std::string(what) + " needs a float input, got " + type_str(x));
  const int64_t channels = x.shape[static_cast<size_t>(axis)];
  if (channels == kOpenDim) throw OpError("the channel axis cannot be the open batch dimension");
  static const char* names[] = {"x", "gamma", "beta", "running_mean", "running_var"};
  for (size_t i = 1; i < c.in.size(); ++i)
    if (c.in[i].shape != Shape{channels} || c.in[i].dtype != x.dtype)
      throw OpError(std::string(names[i]) + " must be " + std::string(dtype_name(x.dtype)) + "[" +
                    std::to_string(channels) + "] (the channel axis " + std::to_string(axis) + " of " + type_str(x) +
                    "), got " + type_str(c.in[i]));
  return x;
}

// gamma / sqrt(var + epsilon), per channel.
NodeId channel_scale(GraphBuilder& b, NodeId gamma, NodeId var, double epsilon) {
  return b.add2("mul", gamma, b.add1("rsqrt", b.add2("add", var, b.scalar_like(epsilon, var))));
}

// (x - mean) * gamma / sqrt(var + epsilon) + beta, per channel along axis.
NodeId normalize(GraphBuilder& b, NodeId x, NodeId mean, NodeId var, NodeId gamma, NodeId beta, double epsilon,
                 int axis) {
  const int rank = b.type(x).rank();
  NodeId scale = channel_scale(b, gamma, var, epsilon);
  NodeId centered = b.add2("sub", x, along_axis(b, mean, axis, rank));
  return b.add2("add", b.add2("mul", centered, along_axis(b, scale, axis, rank)), along_axis(b, beta, axis, rank));
}

// Training: batch statistics normalize; the running ones move toward them,
// PyTorch's way (the running variance unbiased).
NodeId batch_norm_in_mode(GraphBuilder& b, NodeId id, const ModeCtx& ctx) {
  const Node n = b.graph().node(id);
  const NodeId x = n.inputs[0], gamma = n.inputs[1], beta = n.inputs[2], rm = n.inputs[3], rv = n.inputs[4];
  const int rank = b.type(x).rank();
  const int axis = normalize_axis(n.attrs.at("axis").get<int64_t>(), rank);
  const double eps = n.attrs.at("epsilon").get<double>(), momentum = n.attrs.at("momentum").get<double>();
  if (ctx.mode == Mode::infer) {
    // x * scale + shift, both from params: fold-scales moves the scale into a
    // preceding convolution's or dense layer's weights.
    NodeId scale = channel_scale(b, gamma, rv, eps);
    NodeId shift = b.add2("sub", beta, b.add2("mul", rm, scale));
    return b.add2("add", b.add2("mul", x, along_axis(b, scale, axis, rank)), along_axis(b, shift, axis, rank));
  }
  const Attrs over = {{"axes", all_but(axis, rank)}};
  NodeId mean, var, centered, count = kNoNode;
  if (n.attrs.value("sync", false)) {
    // Statistics of the global batch: every rank's sums and counts added up
    // (cross_rank_sum; its gradient sums the ranks' cotangents the same way).
    count = b.add("reshape", {b.add("cross_rank_sum", {b.add("reshape", {b.count_along(x, all_but(axis, rank))},
                                                               {{"shape", Shape{1}}})})},
                  {{"shape", Shape{}}});
    mean = b.add2("div", b.add("cross_rank_sum", {b.add("reduce_sum", {x}, over)}), count);
    centered = b.add2("sub", x, along_axis(b, mean, axis, rank));
    var = b.add2("div", b.add("cross_rank_sum", {b.add("reduce_sum", {b.add1("square", centered)}, over)}), count);
  } else {
    mean = b.add("reduce_mean", {x}, over);
    centered = b.add2("sub", x, along_axis(b, mean, axis, rank));
    var = b.add("reduce_mean", {b.add1("square", centered)}, over);
  }
  NodeId y = normalize(b, x, mean, var, gamma, beta, eps, axis);
  Graph& g = b.graph();
  auto blend = [&](NodeId running, NodeId batch) {
    return b.add2("add", b.add2("mul", running, b.scalar_like(1 - momentum, running)),
                  b.add2("mul", batch, b.scalar_like(momentum, running)));
  };
  const bool persistent = g.node(rm).op == "param" && g.node(rv).op == "param";
  if (persistent && momentum > 0) {
    if (count == kNoNode) count = b.count_along(x, all_but(axis, rank));
    NodeId unbiased = b.add2("div", b.add2("mul", var, count), b.add2("sub", count, b.scalar_like(1, count)));
    g.updates.push_back({rm, blend(rm, mean)});
    g.updates.push_back({rv, blend(rv, unbiased)});
  }
  return y;
}

const std::vector<AttrSpec> kEpsilon = {{"epsilon", AttrKind::Float, false, 1e-5, "added to the variance", {}, 0}};

std::vector<AttrSpec> with_epsilon(std::vector<AttrSpec> a) {
  a.insert(a.end(), kEpsilon.begin(), kEpsilon.end());
  return a;
}

// Group normalization: the channel axis split into (groups, channels/groups),
// statistics per example and group.
NodeId group_norm(GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
  const NodeId x = in[0];
  const TensorType t = b.type(x);
  const int rank = t.rank();
  if (rank < 2) throw OpError("group_norm needs a batch axis and a channel axis, got " + type_str(t));
  const int axis = normalize_axis(a.at("axis").get<int64_t>(), rank);
  if (axis == 0) throw OpError("the channel axis cannot be axis 0 (the examples)");
  const int64_t c = t.shape[static_cast<size_t>(axis)], groups = a.at("groups").get<int64_t>();
  if (c == kOpenDim || groups < 1 || c % groups != 0)
    throw OpError(std::to_string(groups) + " groups do not divide the " + std::to_string(c) + " channels");
  for (size_t i = 1; i < 3; ++i)
    if (b.type(in[i]).shape != Shape{c})
      throw OpError(std::string(i == 1 ? "gamma" : "beta") + " must be [" + std::to_string(c) + "], got " +
                    type_str(b.type(in[i])));
  Shape split = t.shape;
  split[static_cast<size_t>(axis)] = groups;
  split.insert(split.begin() + axis + 1, c / groups);
  std::vector<int64_t> axes;
  for (int i = 1; i < rank + 1; ++i)
    if (i != axis) axes.push_back(i);
  NodeId xs = b.add("reshape", {x}, {{"shape", split}});
  const Attrs over = {{"axes", axes}, {"keepdims", true}};
  NodeId centered = b.add2("sub", xs, b.add("reduce_mean", {xs}, over));
  NodeId var = b.add("reduce_mean", {b.add1("square", centered)}, over);
  NodeId normed = b.add2("mul", centered, b.add1("rsqrt", b.add2("add", var, b.scalar_like(a.at("epsilon").get<double>(), var))));
  NodeId back = b.add("reshape", {normed}, {{"shape", t.shape}});
  return b.add2("add", b.add2("mul", back, along_axis(b, in[1], axis, rank)), along_axis(b, in[2], axis, rank));
}

void add_normalization_ops(OpRegistry& r) {
  r.add({.name = "batch_norm", .family = "normalization",
         .summary = "per-channel normalization: batch statistics in training (the running ones updated by the step), "
                    "running statistics in inference",
         .inputs = {"x", "gamma", "beta", "running_mean", "running_var"},
         .attrs = with_epsilon({{"axis", AttrKind::Int, false, -1, "the channel axis (-1: NHWC, 1: NCHW)", {}, -64, 63},
                                {"momentum", AttrKind::Float, false, 0.1,
                                 "running = (1 - momentum) running + momentum batch (PyTorch's convention)", {}, 0, 1},
                                {"sync", AttrKind::Bool, false, false,
                                 "data-parallel training: statistics of the global batch (every rank's shard), not "
                                 "of this rank's shard"}}),
         .shape_rule = "x: [..., C, ...], gamma, beta, running_mean, running_var: [C] -> x",
         .infer = [](const InferCtx& c) {
           return checked_norm(c, normalize_axis(c.i("axis"), c.in[0].rank()), "batch_norm");
         },
         .pattern = OpPattern::opaque,
         .by_mode = batch_norm_in_mode,
         .samples = {{{{{-1, 5, 7}}, {{7}}, {{7}}, {{7}}, {{7}, 0.5, 1.5}}},
                     {{{{-1, 3, 4, 5}}, {{3}}, {{3}}, {{3}}, {{3}, 0.5, 1.5}}, {{"axis", 1}, {"momentum", 0.3}}},
                     {{{{33, 17}}, {{17}}, {{17}}, {{17}}, {{17}, 0.5, 1.5}}, {{"epsilon", 1e-3}}},
                     {{{{-1, 2, 6}}, {{6}}, {{6}}, {{6}}, {{6}, 0.5, 1.5}}, {{"sync", true}}}}});
  r.find_mut("batch_norm")->state_inputs = {3, 4};  // running_mean, running_var

  r.add({.name = "layer_norm", .family = "normalization",
         .summary = "normalization over the last axes of each example (statistics per example), then gamma, beta",
         .inputs = {"x", "gamma", "beta"},
         .attrs = with_epsilon({{"axes", AttrKind::IntList, false, nlohmann::json::array({-1}),
                                 "the normalized axes: the last k (gamma and beta have their shape)", {}, -64, 63}}),
         .shape_rule = "x: [..., D...], gamma, beta: [D...] -> x",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           const TensorType t = b.type(in[0]);
           const int rank = t.rank();
           std::vector<int64_t> axes;
           for (int64_t ax : a.at("axes").get<std::vector<int64_t>>()) axes.push_back(normalize_axis(ax, rank));
           std::sort(axes.begin(), axes.end());
           for (size_t i = 0; i < axes.size(); ++i)
             if (axes[i] != rank - static_cast<int64_t>(axes.size() - i))
               throw OpError("layer_norm's axes must be the last " + std::to_string(axes.size()) + " axes of " + type_str(t));
           if (axes.empty() || axes[0] == 0) throw OpError("layer_norm normalizes the axes after the batch axis");
           const Shape norm(t.shape.end() - static_cast<long>(axes.size()), t.shape.end());
           for (size_t i = 1; i < 3; ++i)
             if (b.type(in[i]).shape != norm)
               throw OpError(std::string(i == 1 ? "gamma" : "beta") + " must be " + shape_str(norm) + ", got " +
                             type_str(b.type(in[i])));
           NodeId normed = b.add("normalize", {in[0]}, {{"trailing_axes", static_cast<int64_t>(axes.size())}, {"epsilon", a.at("epsilon")}});
           return b.add2("add", b.add2("mul", normed, in[1]), in[2]);
         },
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 17}}, {{17}}, {{17}}}},
                     {{{{-1, 3, 5}}, {{3, 5}}, {{3, 5}}}, {{"axes", {1, 2}}, {"epsilon", 1e-3}}},
                     {{{{4, 6, 33}}, {{33}}, {{33}}}}}});

  // layer_norm's statistics and normalization as one row kernel (a row: the
  // last `trailing_axes` axes of an example, in L1 while it is normalized), and its
  // gradient as another: as reductions and elementwise ops they were five
  // kernels forward and as many backward, two of them storing a copy of x.
  r.add({.name = "normalize", .family = "normalization",
         .summary = "(x - mean) / sqrt(var + epsilon) over the last `trailing_axes` axes (statistics per row, biased variance)",
         .inputs = {"x"},
         .attrs = with_epsilon({{"trailing_axes", AttrKind::Int, false, 1, "how many trailing axes a row spans", {}, 1, 64}}),
         .shape_rule = "x: S -> S",
         .infer = [](const InferCtx& c) { return checked_rows(c, "normalize"); },
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 17}}}}, {{{{-1, 3, 5}}}, {{"trailing_axes", 2}, {"epsilon", 1e-3}}}, {{{{4, 6, 33}}}}}});
  r.add({.name = "normalize_grad", .family = "normalization",
         .summary = "normalize's gradient: r (dy - mean(dy) - xhat mean(dy xhat)), r = 1 / sqrt(var + epsilon), per row of x",
         .inputs = {"x", "dy"},
         .attrs = with_epsilon({{"trailing_axes", AttrKind::Int, false, 1, "how many trailing axes a row spans", {}, 1, 64}}),
         .shape_rule = "x: S, dy: S -> S",
         .infer = [](const InferCtx& c) {
           if (c.in[1] != c.in[0])
             throw OpError("normalize_grad: x and dy differ: " + type_str(c.in[0]) + " vs " + type_str(c.in[1]));
           return checked_rows(c, "normalize_grad");
         },
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 17}}, {{-1, 17}}}}, {{{{-1, 3, 5}}, {{-1, 3, 5}}}, {{"trailing_axes", 2}, {"epsilon", 1e-3}}}}});

  r.add({.name = "group_norm", .family = "normalization",
         .summary = "normalization per example over groups of channels, then per-channel gamma, beta",
         .inputs = {"x", "gamma", "beta"},
         .attrs = with_epsilon({{"groups", AttrKind::Int, true, nullptr, "channel groups (they divide the channels)", {}, 1},
                                {"axis", AttrKind::Int, false, -1, "the channel axis (-1: NHWC, 1: NCHW)", {}, -64, 63}}),
         .shape_rule = "x: [N, ..., C, ...], gamma, beta: [C] -> x",
         .expand = group_norm,
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 3, 4, 6}}, {{6}}, {{6}}}, {{"groups", 3}}},
                     {{{{-1, 4, 5}}, {{4}}, {{4}}}, {{"groups", 2}, {"axis", 1}}}}});

  r.add({.name = "instance_norm", .family = "normalization",
         .summary = "normalization per example and channel over the other axes, then per-channel gamma, beta",
         .inputs = {"x", "gamma", "beta"},
         .attrs = with_epsilon({{"axis", AttrKind::Int, false, -1, "the channel axis (-1: NHWC, 1: NCHW)", {}, -64, 63}}),
         .shape_rule = "x: [N, ..., C, ...], gamma, beta: [C] -> x",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           const TensorType t = b.type(in[0]);
           const int axis = normalize_axis(a.at("axis").get<int64_t>(), t.rank());
           Attrs g = a;
           g["groups"] = t.shape[static_cast<size_t>(axis)];
           return b.add("group_norm", in, g);
         },
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 3, 5, 4}}, {{4}}, {{4}}}}, {{{{-1, 4, 17}}, {{4}}, {{4}}}, {{"axis", 1}}}}});
}

}  // namespace

namespace {

// dx = normalize_grad(x, dy). (normalize_grad itself has no gradient rule:
// differentiating a layer norm twice stops with autodiff's error naming it.)
void add_normalization_gradients(OpRegistry& r) {
  r.find_mut("normalize")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    const Attrs a = c.graph().node(c.node).attrs;  // (a copy: adding nodes moves the node list)
    return {c.b.add("normalize_grad", {c.x[0], c.dy}, {{"trailing_axes", a.at("trailing_axes")}, {"epsilon", a.at("epsilon")}})};
  };
}

// Per row of x (its last `trailing_axes` axes, `len` elements): mean, r = 1/sqrt(var + eps).
struct RowStats {
  double mean, r;
};
RowStats row_stats(const double* x, size_t len, double eps) {
  double s = 0, v = 0;
  for (size_t j = 0; j < len; ++j) s += x[j];
  const double mean = s / static_cast<double>(len);
  for (size_t j = 0; j < len; ++j) v += (x[j] - mean) * (x[j] - mean);
  return {mean, 1 / std::sqrt(v / static_cast<double>(len) + eps)};
}

size_t row_length(const interp::Array& x, int64_t axes) {
  size_t len = 1;
  for (size_t i = x.dimension() - static_cast<size_t>(axes); i < x.dimension(); ++i) len *= x.shape()[i];
  return len;
}

void add_normalization_reference(OpRegistry& r) {
  r.find_mut("normalize")->reference = [](interp::RefCtx& c) {
    const interp::Array& x = *c.in[0];
    const size_t len = row_length(x, c.attrs.at("trailing_axes").get<int64_t>());
    const double eps = c.attrs.at("epsilon").get<double>();
    c.out = interp::Array::from_shape(std::vector<size_t>(x.shape().begin(), x.shape().end()));
    for (size_t base = 0; base < x.size(); base += len) {
      const RowStats st = row_stats(x.data() + base, len, eps);
      for (size_t j = 0; j < len; ++j) c.out.data()[base + j] = (x.data()[base + j] - st.mean) * st.r;
    }
  };
  r.find_mut("normalize_grad")->reference = [](interp::RefCtx& c) {
    const interp::Array &x = *c.in[0], &dy = *c.in[1];
    const size_t len = row_length(x, c.attrs.at("trailing_axes").get<int64_t>());
    const double eps = c.attrs.at("epsilon").get<double>();
    c.out = interp::Array::from_shape(std::vector<size_t>(x.shape().begin(), x.shape().end()));
    for (size_t base = 0; base < x.size(); base += len) {
      const RowStats st = row_stats(x.data() + base, len, eps);
      double g = 0, gx = 0;
      for (size_t j = 0; j < len; ++j) {
        g += dy.data()[base + j];
        gx += dy.data()[base + j] * (x.data()[base + j] - st.mean) * st.r;
      }
      g /= static_cast<double>(len), gx /= static_cast<double>(len);
      for (size_t j = 0; j < len; ++j)
        c.out.data()[base + j] = st.r * (dy.data()[base + j] - g - (x.data()[base + j] - st.mean) * st.r * gx);
    }
  };
}

// [rows, row length] of x whose rows are its last `axes` axes (normalize's trailing_axes).
std::pair<lower::E, lower::E> rows_of(const lower::BufRef& x, int64_t axes) {
  lower::E rows = 1, len = 1;
  for (int d = 0; d < x.rank(); ++d) {
    if (d < x.rank() - axes) rows = rows * x.dim(d);
    else len = len * x.dim(d);
  }
  return {rows, len};
}

// One kernel over the rows of input 0 (its last `trailing_axes` axes), in parallel:
// body(k, the row's first element, its length, mean, 1 / sqrt(var + eps)).
void normalize_rows(lower::LowerCtx& c, const std::string& what,
                    const std::function<void(lower::KernelBuilder&, lower::E, lower::E, lower::E, lower::E)>& body) {
  using namespace lower;
  const BufRef& x = c.in[0];
  const int64_t axes = c.attrs.at("trailing_axes").get<int64_t>();
  const double eps = c.attrs.at("epsilon").get<double>();
  const std::pair<E, E> shape = rows_of(x, axes);
  const E rows = shape.first, len = shape.second;  // (plain locals: lambdas below capture them)
  const Scalar t = x.scalar();
  auto k = c.kernel(what + " over the last " + std::to_string(axes) + " axes, a row at a time");
  k.loop("row", 0, rows, [&](E row) {
    E base = k.let("base", row * len);
    E sum = k.let("sum", lit(0, t));
    k.loop("j", 0, len, [&](E j) { k.set(sum, sum + k.load(x, base + j)); });
    E mean = k.let("mean", sum / cast(len, t));
    E var = k.let("var", lit(0, t));
    k.loop("j", 0, len, [&](E j) {
      E d = k.let("d", k.load(x, base + j) - mean);
      k.set(var, var + d * d);
    });
    E rstd = k.let("rstd", lit(1, t) / sqrt(var / cast(len, t) + lit(eps, t)));
    body(k, base, len, mean, rstd);
  }, numel(x.shape, c.max_batch()) >= kParallelMinElements);
}

// The row's mean, its variance about the mean, then the row itself (and for
// the gradient, the row's two means of dy first).
void add_normalization_lowering(OpRegistry& r) {
  using namespace lower;
  r.find_mut("normalize")->lower = [](LowerCtx& c) {
    const BufRef &x = c.in[0], &y = c.out;
    normalize_rows(c, "normalize", [&](KernelBuilder& k, E base, E len, E mean, E rstd) {
      k.loop("j", 0, len, [&](E j) { k.store(y, base + j, (k.load(x, base + j) - mean) * rstd); });
    });
  };
  r.find_mut("normalize_grad")->lower = [](LowerCtx& c) {
    const BufRef &x = c.in[0], &dy = c.in[1], &dx = c.out;
    const Scalar t = x.scalar();
    normalize_rows(c, "normalize's gradient", [&](KernelBuilder& k, E base, E len, E mean, E rstd) {
      E g = k.let("g", lit(0, t)), gx = k.let("gx", lit(0, t));
      k.loop("j", 0, len, [&](E j) {
        E dyj = k.let("dyj", k.load(dy, base + j));
        k.set(g, g + dyj);
        k.set(gx, gx + dyj * ((k.load(x, base + j) - mean) * rstd));
      });
      E g_mean = k.let("g_mean", g / cast(len, t)), gx_mean = k.let("gx_mean", gx / cast(len, t));
      k.loop("j", 0, len, [&](E j) {
        E xhat = k.let("xhat", (k.load(x, base + j) - mean) * rstd);
        k.store(dx, base + j, rstd * (k.load(dy, base + j) - g_mean - xhat * gx_mean));
      });
    });
  };
}

}  // namespace

void register_normalization_family(OpRegistry& r) {
  add_normalization_ops(r);
  add_normalization_gradients(r);
  add_normalization_reference(r);
  add_normalization_lowering(r);
  for (const char* name : {"normalize", "normalize_grad"})
    r.find_mut(name)->mixes_along = [](const Graph& g, const Node& n) {  // the last trailing_axes axes
      const int rank = g.node(n.inputs[0]).type.rank();
      std::vector<int> axes;
      for (int a = std::max(0, rank - static_cast<int>(n.attrs.at("trailing_axes").get<int64_t>())); a < rank; ++a) axes.push_back(a);
      return axes;
    };
}

}  // namespace kiln
