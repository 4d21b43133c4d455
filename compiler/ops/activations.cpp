// Activations and the dense layer, as composites of primitives (their
// gradients come from their decompositions, fusion gets their speed back),
// and softmax, a primitive with a row kernel of its own.
#include <cmath>
#include <limits>

#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

// max over `axis` kept as size 1, used to make softmax and log_softmax
// stable: a constant shift to them, so no gradient flows through it.
static NodeId max_keep(GraphBuilder& b, NodeId x, int64_t axis) {
  return b.add1("stop_gradient", b.add("reduce_max", {x}, {{"axes", {axis}}, {"keepdims", true}}));
}

static TensorType float_only(const TensorType& t, const char* op) {
  if (!is_float(t.dtype)) throw OpError(std::string(op) + " needs a float tensor, got " + type_str(t));
  return t;
}

// causal: the axis is the last of a value of rank >= 2 whose rows (the axis
// before it) are not the open batch axis, whose length would change the mask.
static void causal_rows(const TensorType& x, int axis, const char* op) {
  if (x.rank() < 2 || axis != x.rank() - 1)
    throw OpError(std::string(op) + ": causal needs the last axis of a value of rank >= 2 (rows i, columns j), got axis " +
                  std::to_string(axis) + " of " + type_str(x));
  if (x.shape[static_cast<size_t>(x.rank() - 2)] == kOpenDim)
    throw OpError(std::string(op) + ": causal rows cannot be the open batch axis of " + type_str(x));
}

static void add_activation_ops(OpRegistry& r) {
  r.add({.name = "relu", .family = "activations", .summary = "max(x, 0) (composite: maximum)", .inputs = {"x"},
         .shape_rule = "x: S -> S",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs&) {
           float_only(b.type(in[0]), "relu");
           return b.add2("maximum", in[0], b.scalar_like(0.0, in[0]));
         },
         .pattern = OpPattern::elementwise,
         .kinks = Kinks::gradient_steps,
         .activation = true,
         .samples = unary_samples()});

  // Elementwise activations with parameters: composites of math ops, so their
  // gradients and fusion come from the parts.
  auto activation = [&](const char* name, const char* summary, std::vector<AttrSpec> attrs, ExpandFn expand,
                        std::vector<OpSample> samples) -> OpDef& {
    return r.add({.name = name, .family = "activations", .summary = summary, .inputs = {"x"},
                  .attrs = std::move(attrs), .shape_rule = "x: S -> S",
                  .expand = [name, expand](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
                    float_only(b.type(in[0]), name);
                    return expand(b, in, a);
                  },
                  .pattern = OpPattern::elementwise, .activation = true, .samples = std::move(samples)});
  };
  auto k = [](GraphBuilder& b, double v, NodeId like) { return b.scalar_like(v, like); };
  activation("gelu", "x * Phi(x), Phi the normal CDF; approximate = tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))",
             {{"approximate", AttrKind::Enum, false, "none", "the exact form or the tanh approximation", {"none", "tanh"}}},
             [k](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
               NodeId x = in[0], inner;
               if (a.at("approximate") == "tanh") {
                 NodeId cubic = b.add2("mul", b.add2("mul", x, b.add1("square", x)), k(b, 0.044715, x));
                 NodeId arg = b.add2("mul", b.add2("add", x, cubic), k(b, std::sqrt(2 / M_PI), x));
                 inner = b.add1("tanh", arg);
               } else {
                 inner = b.add1("erf", b.add2("mul", x, k(b, M_SQRT1_2, x)));
               }
               NodeId half_x = b.add2("mul", x, k(b, 0.5, x));
               return b.add2("mul", half_x, b.add2("add", inner, k(b, 1, x)));
             },
             with_each("approximate", {"none", "tanh"}, unary_samples({-3, 3})));
  activation("leaky_relu", "x where x > 0, else alpha x",
             {{"alpha", AttrKind::Float, false, 0.01, "slope below zero"}},
             [k](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
               NodeId x = in[0];
               NodeId pos = b.add("compare", {x, k(b, 0, x)}, {{"kind", "gt"}});
               return b.add("select", {pos, x, b.add2("mul", x, k(b, a.at("alpha").get<double>(), x))});
             },
             {{{{{-1, 17}}}}, {{{{3, 33}}}, {{"alpha", 0.2}}}});
  // exp of min(x, 0): the branch select does not take must not overflow
  // (its gradient, multiplied by zero, would be inf * 0 = NaN).
  auto elu = [k](GraphBuilder& b, NodeId x, double alpha) {
    NodeId pos = b.add("compare", {x, k(b, 0, x)}, {{"kind", "gt"}});
    NodeId e = b.add1("exp", b.add2("minimum", x, k(b, 0, x)));
    return b.add("select", {pos, x, b.add2("mul", b.add2("sub", e, k(b, 1, x)), k(b, alpha, x))});
  };
  activation("elu", "x where x > 0, else alpha (e^x - 1)", {{"alpha", AttrKind::Float, false, 1.0, "scale below zero"}},
             [elu](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
               return elu(b, in[0], a.at("alpha").get<double>());
             },
             {{{{{-1, 17}, -2, 2}}}, {{{{3, 33}, -2, 2}}, {{"alpha", 0.5}}}});
  activation("selu", "scale * elu(x, alpha) with the self-normalizing constants (alpha 1.6733, scale 1.0507)", {},
             [elu, k](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs&) {
               const double alpha = 1.6732632423543772848170429916717, scale = 1.0507009873554804934193349852946;
               return b.add2("mul", elu(b, in[0], alpha), k(b, scale, in[0]));
             },
             unary_samples({-2, 2}));
  activation("silu", "x * sigmoid(x) (swish)", {},
             [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs&) {
               return b.add2("mul", in[0], b.add1("sigmoid", in[0]));
             },
             unary_samples({-4, 4}));
  auto hard_sigmoid = [k](GraphBuilder& b, NodeId x, double alpha, double beta) {
    NodeId lin = b.add2("add", b.add2("mul", x, k(b, alpha, x)), k(b, beta, x));
    return b.add("clip", {lin}, {{"min", 0.0}, {"max", 1.0}});
  };
  activation("hard_sigmoid", "max(0, min(1, alpha x + beta))",
             {{"alpha", AttrKind::Float, false, 0.2, "slope"}, {"beta", AttrKind::Float, false, 0.5, "offset"}},
             [hard_sigmoid](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
               return hard_sigmoid(b, in[0], a.at("alpha").get<double>(), a.at("beta").get<double>());
             },
             {{{{{-1, 17}, -4, 4}}}, {{{{3, 33}, -4, 4}}, {{"alpha", 0.5}, {"beta", 0.25}}}});
  activation("hard_swish", "x * hard_sigmoid(x; alpha 1/6, beta 1/2)", {},
             [hard_sigmoid](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs&) {
               return b.add2("mul", in[0], hard_sigmoid(b, in[0], 1.0 / 6, 0.5));
             },
             unary_samples({-5, 5}));

  // A primitive with its own row kernel (one pass in, one out) and its own
  // gradient: as exp(x - max) / sum, it was four passes over the scores and
  // its gradient three (char_gpt's attention, 8 MB a tensor).
  // causal: attention's mask as a property of the op, not a -1e9 constant
  // added to the scores: the kernel never reads the masked scores (so the
  // product computing them may skip them) and the output is known to be zero
  // there (so products reading it may skip those terms). PyTorch's
  // scaled_dot_product_attention(is_causal=True) keeps the same elements.
  r.add({.name = "softmax", .family = "activations",
         .summary = "exp(x - max) / sum(exp(x - max)) along an axis", .inputs = {"x"},
         .attrs = {{"axis", AttrKind::Int, false, -1, "the axis", {}, -64, 63},
                   {"causal", AttrKind::Bool, false, false,
                    "rows of the last two axes [.., Tq, Tk] keep only j <= i (top-left aligned); the rest is 0"}},
         .shape_rule = "x: S -> S",
         .infer = [](const InferCtx& c) {
           const int axis = normalize_axis(c.i("axis"), c.in[0].rank());
           if (c.b("causal")) causal_rows(c.in[0], axis, "softmax");
           return float_only(c.in[0], "softmax");
         },
         .pattern = OpPattern::opaque,
         .activation = true,
         .samples = {{{{{-1, 17}, -3, 3}}},
                     {{{{3, 5, 4}, -3, 3}}, {{"axis", 1}}},
                     {{{{-1, 2, 5, 5}, -3, 3}}, {{"causal", true}}},
                     {{{{2, 3, 6}, -3, 3}}, {{"causal", true}}}}});

  // softmax's gradient as one row kernel (each row read once, in L1): the
  // primitives reduce_sum(dy y) and y (dy - s) were two passes over the
  // scores' size, and the causal form reads only the kept half.
  r.add({.name = "softmax_grad", .family = "activations",
         .summary = "dx = y (dy - sum(dy y)) along an axis: softmax's gradient from its output y",
         .inputs = {"y", "dy"},
         .attrs = {{"axis", AttrKind::Int, false, -1, "the axis", {}, -64, 63},
                   {"causal", AttrKind::Bool, false, false, "as softmax's: rows keep j <= i, dx is 0 past them"}},
         .shape_rule = "y: S, dy: S -> S",
         .infer = [](const InferCtx& c) {
           const int axis = normalize_axis(c.i("axis"), c.in[0].rank());
           if (c.in[1] != c.in[0])
             throw OpError("softmax_grad: y and dy differ: " + type_str(c.in[0]) + " vs " + type_str(c.in[1]));
           if (c.b("causal")) causal_rows(c.in[0], axis, "softmax_grad");
           return float_only(c.in[0], "softmax_grad");
         },
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 9}, 0, 1}, {{-1, 9}}}},
                     {{{{3, 5, 4}, 0, 1}, {{3, 5, 4}}}, {{"axis", 1}}},
                     {{{{-1, 2, 5, 5}, 0, 1}, {{-1, 2, 5, 5}}}, {{"causal", true}}},
                     {{{{2, 3, 6}, 0, 1}, {{2, 3, 6}}}, {{"causal", true}}}}});
  r.find_mut("softmax_grad")->algebra.linear_inputs = {1};  // dy: a scale of dx is a scale of dy
  for (const char* name : {"softmax", "softmax_grad"}) {
    OpDef& d = *r.find_mut(name);
    d.zero_above_diagonal = [](const Graph&, const Node& n) { return n.attrs.value("causal", false); };
    d.reads_on_and_below_diagonal = [](const Node& n, int) { return n.attrs.value("causal", false); };
  }

  r.add({.name = "log_softmax", .family = "activations",
         .summary = "x - max - log(sum(exp(x - max))) along an axis (composite, stable for large logits)",
         .inputs = {"x"},
         .attrs = {{"axis", AttrKind::Int, false, -1, "the axis", {}, -64, 63}},
         .shape_rule = "x: S -> S",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           float_only(b.type(in[0]), "log_softmax");
           int64_t axis = a.at("axis");
           NodeId shifted = b.add2("sub", in[0], max_keep(b, in[0], axis));
           NodeId s = b.add("reduce_sum", {b.add1("exp", shifted)}, {{"axes", {axis}}, {"keepdims", true}});
           return b.add2("sub", shifted, b.add1("log", s));
         },
         .pattern = OpPattern::opaque,
         .activation = true,
         .samples = {{{{{-1, 17}, -3, 3}}}, {{{{3, 5, 4}, -3, 3}}, {{"axis", 1}}}}});

  r.add({.name = "dense", .family = "activations", .summary = "x @ w + b (composite: matmul, add)",
         .inputs = {"x", "w", "b"},
         .shape_rule = "x: [M,K], w: [K,N], b: [N] -> [M,N]",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs&) {
           return b.add2("add", b.add2("matmul", in[0], in[1]), in[2]);
         },
         .pattern = OpPattern::contraction,
         .samples = {{{{{-1, 17}}, {{17, 5}}, {{5}}}}}});
}

// ---- gradient rules (compiler/autodiff calls them) ----
static void add_activation_gradients(OpRegistry& r) {
  // dx = y (dy - sum(dy y)) along the axis.
  r.find_mut("softmax")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    const Attrs a = c.graph().node(c.node).attrs;  // (a copy: adding nodes moves the node list)
    return {c.b.add("softmax_grad", {c.y, c.dy}, {{"axis", a.at("axis")}, {"causal", a.at("causal")}})};
  };
  // With s = sum(y dy) and t = sum(g y) over the row (g: the gradient of dx):
  // d/d dy = y (g - t) = softmax_grad(y, g); d/dy = g (dy - s) - dy t, zero
  // where causal masks (those y and dy are never read).
  r.find_mut("softmax_grad")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    const Attrs a = c.graph().node(c.node).attrs;  // (a copy: adding nodes moves the node list)
    const int64_t axis = a.at("axis").get<int64_t>();
    const NodeId y = c.x[0], dy = c.x[1];
    auto row_sum = [&](NodeId u, NodeId v) {
      return c.b.add("reduce_sum", {c.b.add2("mul", u, v)}, {{"axes", {axis}}, {"keepdims", true}});
    };
    NodeId d_dy = c.b.add("softmax_grad", {y, c.dy}, {{"axis", axis}, {"causal", a.at("causal")}});
    // (causal: s and t sum the kept terms alone, as the forward does; y, dy and g masked to 0 first)
    NodeId ym = y, dym = dy, gm = c.dy;
    if (a.at("causal").get<bool>()) {
      const Shape& s = c.graph().node(y).type.shape;
      const int64_t rows = s[s.size() - 2], cols = s.back();
      std::vector<double> keep(static_cast<size_t>(rows * cols), 0.0);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j <= i && j < cols; ++j) keep[static_cast<size_t>(i * cols + j)] = 1;
      NodeId kept = c.b.add("cast", {c.b.constant_tensor(keep, {rows, cols})}, {{"dtype", "bool"}});
      auto masked = [&](NodeId v) { return c.b.add("where", {kept, v, c.b.scalar_like(0, v)}); };
      ym = masked(y), dym = masked(dy), gm = masked(c.dy);
    }
    NodeId d_y = c.b.add2("sub", c.b.add2("mul", gm, c.b.add2("sub", dym, row_sum(ym, dym))),
                          c.b.add2("mul", dym, row_sum(gm, ym)));
    return {d_y, d_dy};
  };
}

// ---- reference kernels (compiler/interp runs them) ----
// Each row of input 0 along `axis`: body(its first element, the stride
// between its elements, how many it keeps (causal: min(i + 1, Tk)), its length).
static void reference_rows(interp::RefCtx& c, const std::function<void(size_t, size_t, size_t, size_t)>& body) {
  const interp::Array& x = *c.in[0];
  const size_t axis = static_cast<size_t>(normalize_axis(c.attrs.at("axis").get<int64_t>(), static_cast<int>(x.dimension())));
  const bool causal = c.attrs.at("causal").get<bool>();
  size_t outer = 1, len = x.shape()[axis], inner = 1;
  for (size_t i = 0; i < axis; ++i) outer *= x.shape()[i];
  for (size_t i = axis + 1; i < x.dimension(); ++i) inner *= x.shape()[i];
  const size_t rows = causal ? x.shape()[axis - 1] : 1;  // (causal: the axis is the last, inner 1)
  c.out = interp::Array::from_shape(std::vector<size_t>(x.shape().begin(), x.shape().end()));
  for (size_t o = 0; o < outer; ++o)
    for (size_t i = 0; i < inner; ++i) body(o * len * inner + i, inner, causal ? std::min(len, o % rows + 1) : len, len);
}

static void add_activation_reference(OpRegistry& r) {
  r.find_mut("softmax")->reference = [](interp::RefCtx& c) {
    reference_rows(c, [&](size_t base, size_t inner, size_t kept, size_t len) {
      const double* px = c.in[0]->data() + base;
      double* py = c.out.data() + base;
      double m = -std::numeric_limits<double>::infinity(), s = 0;
      for (size_t j = 0; j < kept; ++j) m = (px[j * inner] > m || std::isnan(px[j * inner])) ? px[j * inner] : m;
      for (size_t j = 0; j < kept; ++j) s += std::exp(px[j * inner] - m);
      for (size_t j = 0; j < len; ++j) py[j * inner] = j < kept ? std::exp(px[j * inner] - m) / s : 0.0;
    });
  };
  r.find_mut("softmax_grad")->reference = [](interp::RefCtx& c) {
    reference_rows(c, [&](size_t base, size_t inner, size_t kept, size_t len) {
      const double *py = c.in[0]->data() + base, *pd = c.in[1]->data() + base;
      double* px = c.out.data() + base;
      double s = 0;
      for (size_t j = 0; j < kept; ++j) s += py[j * inner] * pd[j * inner];
      for (size_t j = 0; j < len; ++j) px[j * inner] = j < kept ? py[j * inner] * (pd[j * inner] - s) : 0.0;
    });
  };
}

// ---- lowering to loop IR (compiler/lower) ----
// One kernel over the rows of input 0 along `axis` (softmax's and its
// gradient's), in parallel, each while it is in L1: body(k, element j's
// index, how many leading elements the row keeps (causal: min(i + 1, Tk)),
// the row's length).
using RowIndex = std::function<lower::E(lower::E)>;
static void softmax_rows(lower::LowerCtx& c, const std::string& what,
                         const std::function<void(lower::KernelBuilder&, const RowIndex&, lower::E, lower::E)>& body) {
  using namespace lower;
  const BufRef& x = c.in[0];
  const int axis = normalize_axis(c.attrs.at("axis").get<int64_t>(), x.rank());
  const bool causal = c.attrs.at("causal").get<bool>();
  E outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer = outer * x.dim(d);
  for (int d = axis + 1; d < x.rank(); ++d) inner = inner * x.dim(d);
  const E len = x.dim(axis);
  auto k = c.kernel(what + " over axis " + std::to_string(axis) + (causal ? ", causal" : "") + ", a row at a time");
  k.loop("row", 0, outer * inner, [&](E row) {
    // The row's first element; its elements `inner` apart (1: contiguous, vectorized).
    const bool contiguous = is_const(inner.p) && inner.p->ival == 1;
    E base = k.let("base", contiguous ? row * len : (row / inner) * len * inner + row % inner);
    // Causal: row i of each [Tq, Tk] matrix reads its first min(i + 1, Tk) elements, no others.
    E kept = causal ? k.let("kept", min(row % x.dim(axis - 1) + 1, len)) : len;
    body(k, [&](E j) { return base + j * inner; }, kept, len);
  }, numel(x.shape, c.max_batch()) >= kParallelMinElements);
}

static void add_activation_lowering(OpRegistry& r) {
  // One kernel, a row at a time while it is in L1: its max, then exp(x - max)
  // stored and summed, then divided by the sum. The rows run in parallel.
  r.find_mut("softmax")->lower = [](lower::LowerCtx& c) {
    using namespace lower;
    const BufRef &x = c.in[0], &y = c.out;
    const Scalar t = x.scalar();
    softmax_rows(c, "softmax", [&](KernelBuilder& k, const RowIndex& at_j, E kept, E len) {
      E m = k.let("max", lit(-std::numeric_limits<double>::infinity(), t));
      k.loop("j", 0, kept, [&](E j) { k.set(m, max(m, k.load(x, at_j(j)))); });
      E sum = k.let("sum", lit(0, t));
      k.loop("j", 0, kept, [&](E j) {
        E e = k.let("e", exp(k.load(x, at_j(j)) - m));
        k.store(y, at_j(j), e);
        k.set(sum, sum + e);
      });
      // One division a row, then products: a vector division costs ~10x a product.
      E inverse = k.let("inverse", lit(1, t) / sum);
      k.loop("j", 0, kept, [&](E j) { k.store(y, at_j(j), k.load(y, at_j(j)) * inverse); });
      if (c.attrs.at("causal").get<bool>()) k.loop("j", kept, len, [&](E j) { k.store(y, at_j(j), lit(0, t)); });
    });
  };
  // One pass a row: the row's sum of y dy, then dx.
  r.find_mut("softmax_grad")->lower = [](lower::LowerCtx& c) {
    using namespace lower;
    const BufRef &y = c.in[0], &dy = c.in[1], &dx = c.out;
    const Scalar t = y.scalar();
    softmax_rows(c, "softmax's gradient", [&](KernelBuilder& k, const RowIndex& at_j, E kept, E len) {
      E s = k.let("s", lit(0, t));
      k.loop("j", 0, kept, [&](E j) { k.set(s, s + k.load(y, at_j(j)) * k.load(dy, at_j(j))); });
      k.loop("j", 0, kept, [&](E j) { k.store(dx, at_j(j), k.load(y, at_j(j)) * (k.load(dy, at_j(j)) - s)); });
      if (c.attrs.at("causal").get<bool>()) k.loop("j", kept, len, [&](E j) { k.store(dx, at_j(j), lit(0, t)); });
    });
  };
}

// One registration for the family: its ops, then their gradients, reference
// kernels and lowerings.
void register_activation_family(OpRegistry& r) {
  add_activation_ops(r);
  add_activation_gradients(r);
  add_activation_reference(r);
  add_activation_lowering(r);
  for (const char* name : {"softmax", "softmax_grad"}) r.find_mut(name)->mixes_along = mixes_along_attr("axis");
}

}  // namespace kiln
