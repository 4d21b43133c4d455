// Elementwise math beyond arithmetic: tanh, erf, abs, sign, rounding,
// trigonometry, reciprocals, softplus, clip, NaN/Inf tests, and the binary
// pow, minimum and mod. Every op here is one elementwise kernel, so it fuses.
#include <cmath>
#include <optional>

#include "compiler/ir/builder.h"
#include <xtensor/xvectorize.hpp>

#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

namespace {

using lower::E;
using interp::Array;
using interp::RefCtx;

TensorType float_in(const InferCtx& c) {
  if (!is_float(c.in[0].dtype)) throw OpError("needs a float tensor, got " + type_str(c.in[0]));
  return c.in[0];
}

TensorType numeric_in(const InferCtx& c) {
  if (c.in[0].dtype == DType::boolean) throw OpError("needs a numeric tensor, got " + type_str(c.in[0]));
  return c.in[0];
}

TensorType float_to_bool(const InferCtx& c) {
  if (!is_float(c.in[0].dtype)) throw OpError("needs a float tensor, got " + type_str(c.in[0]));
  return {DType::boolean, c.in[0].shape};
}

TensorType binary_numeric(const InferCtx& c) {
  if (c.in[0].dtype != c.in[1].dtype)
    throw OpError("operand dtypes differ: " + type_str(c.in[0]) + " vs " + type_str(c.in[1]));
  if (c.in[0].dtype == DType::boolean) throw OpError("arithmetic on bool tensors; cast them first");
  return {c.in[0].dtype, broadcast_shapes(c.in[0].shape, c.in[1].shape)};
}

template <class F>
Array map1(const Array& x, F f) {
  Array out = Array::from_shape(x.shape());
  auto o = out.begin();
  for (double v : x) *o++ = f(v);
  return out;
}

// f on each pair of elements, the operands numpy-broadcast (xtensor's).
template <class F>
Array map2(const Array& a, const Array& b, F f) {
  return xt::vectorize(f)(a, b);
}

// atan by Cephes' atanf: |x| reduced to [0, tan(pi/8)] by atan(x) = pi/2 +
// atan(-1/x) or pi/4 + atan((x-1)/(x+1)), then a degree-9 odd polynomial;
// relative error about 1e-7 (f32 precision).
E atan_expr(E x) {
  auto c = [&](double v) { return lower::lit(v, x.type()); };
  E a = abs(x);
  E big = a > c(2.414213562373095), mid = a > c(0.41421356237309503);
  E t = select(big, c(-1.0) / a, select(mid, (a - c(1.0)) / (a + c(1.0)), a));
  E base = select(big, c(M_PI_2), select(mid, c(M_PI_4), c(0.0)));
  E z = t * t;
  E p = (((c(8.05374449538e-2) * z - c(1.38776856032e-1)) * z + c(1.99777106478e-1)) * z - c(3.33329491539e-1)) * z * t + t;
  E r = base + p;
  return select(x < c(0.0), -r, r);
}

// Python's modulo: the result takes the divisor's sign.
// C's fmod (exact) moved to the divisor's sign, as the generated code computes it.
double py_mod(double x, double y) {
  double r = std::fmod(x, y);
  return r != 0 && ((r < 0) != (y < 0)) ? r + y : r;
}

// Attributes of clip: either bound may be absent.
std::vector<AttrSpec> clip_attrs() {
  return {{"min", AttrKind::Float, false, nullptr, "lower bound (absent: none)"},
          {"max", AttrKind::Float, false, nullptr, "upper bound (absent: none)"}};
}

NodeId distance_to(GraphBuilder& b, NodeId x, double point) {
  NodeId d = b.add2("sub", x, b.scalar_like(point, x));
  return b.add1("abs", d);
}

}  // namespace

static void add_math_ops(OpRegistry& r) {
  auto unary = [&](const char* name, const char* summary, InferFn infer, Range range = {}) -> OpDef& {
    return r.add({.name = name, .family = "math", .summary = summary, .inputs = {"x"}, .shape_rule = "x: S -> S",
                  .infer = std::move(infer), .pattern = OpPattern::elementwise, .samples = unary_samples(range)});
  };
  unary("tanh", "hyperbolic tangent", float_in, {-3, 3}).activation = true;
  // emit_erf_f32 (vector_math.cpp): a clamp (4), x^2, degree 6 and 4 polynomials (10 FMAs), a
  // multiply, a division and the result's clamp (4).
  unary("erf", "the error function (f32-accurate rational approximation in compiled code)", float_in, {-2.5, 2.5})
      .lane_ops = 21;
  OpDef& abs_op = unary("abs", "|x|", numeric_in);
  abs_op.kinks = Kinks::gradient_steps;
  abs_op.kink_distance = [](GraphBuilder& b, const Node& n) { return b.add1("abs", n.inputs[0]); };
  // The gradient of what the model does not learn through: softmax's max
  // shift (the softmax does not change with it: the exact gradient through it
  // is zero, computed it costs an argmax and a one-hot per row).
  OpDef& stop = unary("stop_gradient", "x itself, with no gradient flowing back through it", numeric_in);
  stop.no_grad = true;
  // Once the gradient is taken (the simplifier runs after autodiff) it is x: no kernel.
  stop.algebra.is_noop = [](const Node&) { return true; };
  OpDef& sign = unary("sign", "-1, 0 or 1 by the sign of x (no gradient)", numeric_in);
  sign.no_grad = true;
  sign.kinks = Kinks::value_steps;
  for (const char* name : {"floor", "ceil", "round"}) {
    bool nearest = std::string(name) == "round";
    OpDef& d = unary(name, nearest ? "round to the nearest integer, ties to even (no gradient)"
                                   : (std::string(name) == "floor" ? "largest integer <= x (no gradient)"
                                                                   : "smallest integer >= x (no gradient)"),
                     float_in, {-3, 3});
    d.no_grad = true;
    d.kinks = Kinks::value_steps;
    // Steps at integers (floor, ceil) or half-integers (round).
    d.kink_distance = [nearest](GraphBuilder& b, const Node& n) {
      NodeId x = n.inputs[0];
      NodeId shifted = nearest ? b.add2("sub", x, b.scalar_like(0.5, x)) : x;
      return b.add1("abs", b.add2("sub", shifted, b.add1("round", shifted)));
    };
  }
  unary("sin", "sine", float_in, {-3, 3});
  unary("cos", "cosine", float_in, {-3, 3});
  unary("atan", "arctangent (f32-accurate approximation in compiled code)", float_in, {-4, 4});
  unary("reciprocal", "1 / x", float_in, {0.5, 2});
  unary("rsqrt", "1 / sqrt(x)", float_in, {0.25, 4});
  unary("softplus", "log(1 + e^x), without overflow for large x", float_in, {-4, 4}).activation = true;
  r.add({.name = "clip", .family = "math", .summary = "x limited to [min, max]; the gradient passes where min <= x <= max",
         .inputs = {"x"}, .attrs = clip_attrs(), .shape_rule = "x: S -> S", .infer = numeric_in,
         .pattern = OpPattern::elementwise, .kinks = Kinks::gradient_steps,
         .kink_distance = [](GraphBuilder& b, const Node& n) {
           NodeId d = kNoNode;
           for (const char* bound : {"min", "max"}) {
             if (!n.attrs.contains(bound)) continue;
             NodeId e = distance_to(b, n.inputs[0], n.attrs.at(bound).get<double>());
             d = d == kNoNode ? e : b.add2("minimum", d, e);
           }
           return d == kNoNode ? b.add1("abs", b.add1("exp", n.inputs[0])) : d;  // no bound: far from any kink
         },
         .activation = true,  // {"kind": "clip", "min": 0, "max": 6} is ReLU6
         .samples = {{{{{-1, 17}, -2, 2}}, {{"min", -0.5}, {"max", 0.5}}},
                     {{{{3, 33}, -2, 2}}, {{"min", 0.25}}},
                     {{{{3, 33}, -2, 2}}, {{"max", -0.25}}}}});
  for (const char* name : {"isnan", "isinf"})
    r.add({.name = name, .family = "math",
           .summary = std::string(name) == "isnan" ? "true where x is NaN" : "true where x is +inf or -inf",
           .inputs = {"x"}, .shape_rule = "x: S -> bool[S]", .infer = float_to_bool, .no_grad = true,
           .pattern = OpPattern::elementwise, .samples = unary_samples()});

  auto binary = [&](const char* name, const char* summary, InferFn infer, std::vector<OpSample> samples) -> OpDef& {
    return r.add({.name = name, .family = "math", .summary = summary, .inputs = {"x", "y"},
                  .shape_rule = "x: S1, y: S2 -> broadcast(S1, S2) (numpy rules)", .infer = std::move(infer),
                  .pattern = OpPattern::elementwise, .samples = std::move(samples)});
  };
  binary("pow", "x ^ y (x > 0 for a gradient with respect to y)",
         [](const InferCtx& c) {
           TensorType t = binary_numeric(c);
           if (!is_float(t.dtype)) throw OpError("pow needs float tensors, got " + type_str(c.in[0]));
           return t;
         },
         binary_samples({0.5, 2}, {-2, 2}));
  OpDef& minimum = binary("minimum", "min(x, y); the gradient goes to x where x < y, else to y", binary_numeric,
                          binary_samples());
  minimum.algebra = {.commutative = true, .associative = true};
  minimum.kinks = Kinks::gradient_steps;
  minimum.kink_distance = [](GraphBuilder& b, const Node& n) {
    return b.add1("abs", b.add2("sub", n.inputs[0], n.inputs[1]));
  };
  OpDef& mod = binary("mod", "x - floor(x / y) * y, computed exactly (fmod): the remainder takes the divisor's sign (Python's %)",
                      binary_numeric, binary_samples({-3, 3}, {0.5, 2}));
  mod.algebra.right_identity = std::nullopt;
  mod.kinks = Kinks::gradient_steps;  // -floor(x / y) steps where the value jumps
  mod.kink_distance = [](GraphBuilder& b, const Node& n) {
    NodeId q = b.add2("div", n.inputs[0], n.inputs[1]);
    return b.add1("abs", b.add2("sub", q, b.add1("round", q)));
  };
  mod.samples.push_back({{{{-1, 17}, -20, 20, DType::i32}, {{17}, 1, 6, DType::i32}}});
  mod.samples.push_back({{{{33}, -20, 20, DType::i64}, {{}, -6, -1, DType::i64}}});
}

// ---- gradient rules ----
static void add_math_gradients(OpRegistry& r) {
  auto one_input = [&](const char* name, std::function<NodeId(GradCtx&)> f) {
    r.find_mut(name)->grad = [f](GradCtx& c) -> std::vector<NodeId> { return {f(c)}; };
  };
  auto k = [](GradCtx& c, double v) { return c.b.scalar_like(v, c.dy); };
  // tanh' = 1 - y^2
  one_input("tanh", [k](GradCtx& c) {
    return c.b.add2("mul", c.dy, c.b.add2("sub", k(c, 1), c.b.add1("square", c.y)));
  });
  // erf' = 2/sqrt(pi) e^(-x^2)
  one_input("erf", [k](GradCtx& c) {
    NodeId e = c.b.add1("exp", c.b.add1("neg", c.b.add1("square", c.x[0])));
    return c.b.add2("mul", c.dy, c.b.add2("mul", e, k(c, 2 / std::sqrt(M_PI))));
  });
  one_input("abs", [](GradCtx& c) { return c.b.add2("mul", c.dy, c.b.add1("sign", c.x[0])); });
  one_input("sin", [](GradCtx& c) { return c.b.add2("mul", c.dy, c.b.add1("cos", c.x[0])); });
  one_input("cos", [](GradCtx& c) { return c.b.add1("neg", c.b.add2("mul", c.dy, c.b.add1("sin", c.x[0]))); });
  // atan' = 1 / (1 + x^2)
  one_input("atan", [k](GradCtx& c) {
    return c.b.add2("div", c.dy, c.b.add2("add", k(c, 1), c.b.add1("square", c.x[0])));
  });
  // (1/x)' = -y^2
  one_input("reciprocal", [](GradCtx& c) { return c.b.add1("neg", c.b.add2("mul", c.dy, c.b.add1("square", c.y))); });
  // (x^-1/2)' = -y^3 / 2
  one_input("rsqrt", [k](GradCtx& c) {
    NodeId y3 = c.b.add2("mul", c.y, c.b.add1("square", c.y));
    return c.b.add2("mul", c.dy, c.b.add2("mul", y3, k(c, -0.5)));
  });
  one_input("softplus", [](GradCtx& c) { return c.b.add2("mul", c.dy, c.b.add1("sigmoid", c.x[0])); });
  // dy where the value is x itself (inclusive bounds, as PyTorch's clamp).
  one_input("clip", [k](GradCtx& c) {
    const Attrs a = c.graph().node(c.node).attrs;  // a copy: adding nodes below may move the graph
    NodeId g = c.dy;
    if (a.contains("min"))
      g = c.b.add("select", {c.b.add("compare", {c.x[0], c.b.scalar_like(a.at("min").get<double>(), c.x[0])}, {{"kind", "ge"}}), g, k(c, 0)});
    if (a.contains("max"))
      g = c.b.add("select", {c.b.add("compare", {c.x[0], c.b.scalar_like(a.at("max").get<double>(), c.x[0])}, {{"kind", "le"}}), g, k(c, 0)});
    return g;
  });
  auto to_shape = [](GradCtx& c, NodeId g, int input) { return c.b.reduce_to_shape(g, c.type(c.x[input]).shape); };
  // d x^y / dx = y x^(y-1); d x^y / dy = x^y log x.
  r.find_mut("pow")->grad = [=](GradCtx& c) -> std::vector<NodeId> {
    NodeId dx = c.b.add2("mul", c.dy, c.b.add2("mul", c.x[1], c.b.add2("pow", c.x[0], c.b.add2("sub", c.x[1], k(c, 1)))));
    NodeId dp = c.b.add2("mul", c.dy, c.b.add2("mul", c.y, c.b.add1("log", c.x[0])));
    return {to_shape(c, dx, 0), to_shape(c, dp, 1)};
  };
  // Ties go to y, as maximum's.
  r.find_mut("minimum")->grad = [=](GradCtx& c) -> std::vector<NodeId> {
    NodeId x_wins = c.b.add("compare", {c.x[0], c.x[1]}, {{"kind", "lt"}});
    NodeId zero = k(c, 0);
    return {to_shape(c, c.b.add("select", {x_wins, c.dy, zero}), 0),
            to_shape(c, c.b.add("select", {x_wins, zero, c.dy}), 1)};
  };
  // x - floor(x/y) y: dx = dy, dy = -floor(x/y) dy.
  r.find_mut("mod")->grad = [=](GradCtx& c) -> std::vector<NodeId> {
    if (!is_float(c.type(c.y).dtype)) return {kNoNode, kNoNode};
    NodeId q = c.b.add1("floor", c.b.add2("div", c.x[0], c.x[1]));
    return {to_shape(c, c.dy, 0), to_shape(c, c.b.add1("neg", c.b.add2("mul", c.dy, q)), 1)};
  };
}

// ---- reference kernels (in double) ----
static void add_math_reference(OpRegistry& r) {
  auto unary = [&](const char* name, double (*f)(double)) {
    r.find_mut(name)->reference = [f](RefCtx& c) { c.out = map1(*c.in[0], f); };
  };
  unary("tanh", [](double x) { return std::tanh(x); });
  unary("erf", [](double x) { return std::erf(x); });
  unary("abs", [](double x) { return std::fabs(x); });
  unary("sign", [](double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); });
  unary("stop_gradient", [](double x) { return x; });
  unary("floor", [](double x) { return std::floor(x); });
  unary("ceil", [](double x) { return std::ceil(x); });
  unary("round", [](double x) { return std::nearbyint(x); });  // the default rounding mode: ties to even
  unary("sin", [](double x) { return std::sin(x); });
  unary("cos", [](double x) { return std::cos(x); });
  unary("atan", [](double x) { return std::atan(x); });
  unary("reciprocal", [](double x) { return 1 / x; });
  unary("rsqrt", [](double x) { return 1 / std::sqrt(x); });
  unary("softplus", [](double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); });
  unary("isnan", [](double x) { return std::isnan(x) ? 1.0 : 0.0; });
  unary("isinf", [](double x) { return std::isinf(x) ? 1.0 : 0.0; });
  r.find_mut("clip")->reference = [](RefCtx& c) {
    double lo = c.attrs.contains("min") ? c.attrs.at("min").get<double>() : -INFINITY;
    double hi = c.attrs.contains("max") ? c.attrs.at("max").get<double>() : INFINITY;
    c.out = map1(*c.in[0], [lo, hi](double x) { return interp::nan_min(interp::nan_max(x, lo), hi); });
  };
  r.find_mut("pow")->reference = [](RefCtx& c) {
    c.out = map2(*c.in[0], *c.in[1], [](double x, double y) { return std::pow(x, y); });
  };
  r.find_mut("minimum")->reference = [](RefCtx& c) {
    c.out = map2(*c.in[0], *c.in[1], interp::nan_min);
  };
  r.find_mut("mod")->reference = [](RefCtx& c) {
    if (!is_float(c.node.type.dtype) && xt::any(xt::equal(*c.in[1], 0.0)))
      throw std::runtime_error("integer modulo by zero");
    c.out = map2(*c.in[0], *c.in[1], py_mod);
  };
}

// ---- lowering ----
static void add_math_lowering(OpRegistry& r) {
  auto unary = [&](const char* name, E (*f)(E)) {
    r.find_mut(name)->lower = [name, f](lower::LowerCtx& c) {
      c.elementwise([f](const std::vector<E>& v) { return f(v[0]); }, std::string(name) + " elementwise");
    };
  };
  unary("tanh", [](E x) { return tanh(x); });
  unary("erf", [](E x) { return erf(x); });  // f32: vector_math.cpp; f64: libm
  unary("abs", [](E x) { return abs(x); });
  unary("sign", [](E x) {
    E zero = lower::lit(0, x.type());
    return select(x > zero, lower::lit(1, x.type()), select(x < zero, lower::lit(-1, x.type()), zero));
  });
  unary("stop_gradient", [](E x) { return x; });
  unary("floor", [](E x) { return floor(x); });
  unary("ceil", [](E x) { return ceil(x); });
  unary("round", [](E x) { return round_even(x); });
  unary("sin", [](E x) { return sin(x); });
  unary("cos", [](E x) { return cos(x); });
  unary("atan", atan_expr);
  unary("reciprocal", [](E x) { return lower::lit(1, x.type()) / x; });
  unary("rsqrt", [](E x) { return lower::lit(1, x.type()) / sqrt(x); });
  unary("softplus", [](E x) {
    E one = lower::lit(1, x.type());
    return max(x, lower::lit(0, x.type())) + log(one + exp(-abs(x)));
  });
  unary("isnan", [](E x) { return x != x; });
  unary("isinf", [](E x) { return abs(x) == lower::lit(INFINITY, x.type()); });
  r.find_mut("clip")->lower = [](lower::LowerCtx& c) {
    std::optional<double> lo, hi;
    if (c.attrs.contains("min")) lo = c.attrs.at("min").get<double>();
    if (c.attrs.contains("max")) hi = c.attrs.at("max").get<double>();
    c.elementwise([lo, hi](const std::vector<E>& v) {
      E x = v[0];
      if (lo) x = max(x, lower::lit(*lo, x.type()));
      if (hi) x = min(x, lower::lit(*hi, x.type()));
      return x;
    }, "clip elementwise");
  };
  auto binary = [&](const char* name, E (*f)(E, E)) {
    r.find_mut(name)->lower = [name, f](lower::LowerCtx& c) {
      c.elementwise([f](const std::vector<E>& v) { return f(v[0], v[1]); }, std::string(name) + " elementwise");
    };
  };
  binary("pow", [](E x, E y) { return pow(x, y); });
  // Compare-and-select with ties to x, as the reference's "y < x ? y : x".
  binary("minimum", [](E x, E y) { return min(x, y); });
  // C's remainder (frem is fmod: exact, where x - floor(x / y) * y
  // overflows for a tiny y), moved to the divisor's sign.
  binary("mod", [](E x, E y) {
    E rem = x % y;  // C's remainder: the dividend's sign
    E zero = lower::lit(0, x.type());
    return select(rem != zero && ((rem < zero) != (y < zero)), rem + y, rem);
  });
}

void register_math_family(OpRegistry& r) {
  add_math_ops(r);
  add_math_gradients(r);
  add_math_reference(r);
  add_math_lowering(r);
}

}  // namespace kiln
