// Elementwise ops: binary arithmetic with numpy broadcasting, unary math,
// comparisons, select and cast.
#include <cmath>

#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

static TensorType binary_same_dtype(const InferCtx& c) {
  if (c.in[0].dtype != c.in[1].dtype)
    throw OpError("operand dtypes differ: " + type_str(c.in[0]) + " vs " + type_str(c.in[1]));
  if (c.in[0].dtype == DType::boolean) throw OpError("arithmetic on bool tensors; cast them first");
  return {c.in[0].dtype, broadcast_shapes(c.in[0].shape, c.in[1].shape)};
}

static TensorType unary_float(const InferCtx& c) {
  if (!is_float(c.in[0].dtype)) throw OpError("needs a float tensor, got " + type_str(c.in[0]));
  return c.in[0];
}

static TensorType unary_numeric(const InferCtx& c) {
  if (c.in[0].dtype == DType::boolean) throw OpError("needs a numeric tensor, got " + type_str(c.in[0]));
  return c.in[0];
}

// |x - y|: where maximum and compare switch.
static NodeId distance_between_operands(GraphBuilder& b, const Node& n) {
  NodeId d = b.add2("sub", n.inputs[0], n.inputs[1]);
  return b.add2("maximum", d, b.add1("neg", d));
}

static const char* kBroadcastRule = "x: S1, y: S2 -> broadcast(S1, S2) (numpy rules, trailing dims aligned)";

static void add_elementwise_ops(OpRegistry& r) {
  auto binary = [&](const char* name, const char* summary, OpAlgebra algebra) -> OpDef& {
    return r.add({.name = name, .family = "elementwise", .summary = summary, .inputs = {"x", "y"},
                  .shape_rule = kBroadcastRule, .infer = binary_same_dtype, .pattern = OpPattern::elementwise,
                  .algebra = std::move(algebra), .samples = binary_samples()});
  };
  binary("add", "x + y", {.commutative = true, .associative = true, .left_identity = 0.0, .right_identity = 0.0});
  binary("sub", "x - y", {.right_identity = 0.0});
  binary("mul", "x * y", {.commutative = true, .associative = true, .left_identity = 1.0, .right_identity = 1.0,
                          .multiplies = true});
  binary("div", "x / y", {.right_identity = 1.0}).samples = binary_samples({-1, 1}, {0.5, 2});
  OpDef& maximum = binary("maximum", "max(x, y); the gradient goes to x where x > y, else to y (so relu(0) has gradient 0)",
                          {.commutative = true, .associative = true});
  maximum.kinks = Kinks::gradient_steps;
  maximum.kink_distance = distance_between_operands;

  auto unary = [&](const char* name, const char* summary, InferFn infer, Range range = {}) -> OpDef& {
    return r.add({.name = name, .family = "elementwise", .summary = summary, .inputs = {"x"},
                  .shape_rule = "x: S -> S", .infer = infer, .pattern = OpPattern::elementwise,
                  .samples = unary_samples(range)});
  };
  OpDef& neg = unary("neg", "-x", unary_numeric);
  neg.algebra.involution = true;
  neg.algebra.additive = true;
  for (const char* name : {"add", "sub", "mul", "maximum", "neg"}) r.find_mut(name)->lane_ops = 1;
  // A causal value times a finite constant scalar (softmax's gradient times
  // attention's scale) keeps its zeros: the product reading it skips them too.
  r.find_mut("mul")->zero_above_diagonal = [](const Graph& g, const Node& n) {
    for (size_t k = 0; k < 2; ++k) {
      const Node& scalar = g.node(n.inputs[1 - k]);
      const std::optional<double> v = numel(scalar.type.shape) == 1 ? uniform_value(scalar) : std::nullopt;
      if (v && std::isfinite(*v) && g.node(n.inputs[k]).type.shape == n.type.shape && zero_above_diagonal(g, n.inputs[k])) return true;
    }
    return false;
  };
  // emit_exp_f32: range checks, the reduction, a degree-5 polynomial, 2^n in two factors.
  unary("exp", "e^x", unary_float).lane_ops = 28;
  unary("log", "natural logarithm", unary_float, {.lo = 0.1, .hi = 4});
  unary("sqrt", "square root", unary_float, {.lo = 0.1, .hi = 4});
  unary("square", "x * x", unary_numeric).lane_ops = 1;
  unary("sigmoid", "1 / (1 + e^-x), evaluated without overflow in either tail", unary_float, {.lo = -6, .hi = 6})
      .activation = true;

  r.add({.name = "compare", .family = "elementwise", .summary = "elementwise comparison, giving a bool mask",
         .inputs = {"x", "y"},
         .attrs = {{"kind", AttrKind::Enum, true, nullptr, "the comparison", {"lt", "le", "gt", "ge", "eq", "ne"}}},
         .shape_rule = "x: S1, y: S2 -> bool[broadcast(S1, S2)]",
         .infer = [](const InferCtx& c) {
           if (c.in[0].dtype != c.in[1].dtype)
             throw OpError("operand dtypes differ: " + type_str(c.in[0]) + " vs " + type_str(c.in[1]));
           return TensorType{DType::boolean, broadcast_shapes(c.in[0].shape, c.in[1].shape)};
         },
         .no_grad = true,
         .pattern = OpPattern::elementwise,
         .kinks = Kinks::value_steps,
         .kink_distance = distance_between_operands,
         .samples = with_each("kind", {"lt", "le", "gt", "ge", "eq", "ne"}, binary_samples())});

  r.add({.name = "select", .family = "elementwise", .summary = "cond ? x : y, elementwise",
         .inputs = {"cond", "x", "y"},
         .shape_rule = "cond: bool[S0], x: S1, y: S2 -> broadcast(S0, S1, S2)",
         .infer = [](const InferCtx& c) {
           if (c.in[0].dtype != DType::boolean) throw OpError("cond must be bool, got " + type_str(c.in[0]));
           if (c.in[1].dtype != c.in[2].dtype)
             throw OpError("branch dtypes differ: " + type_str(c.in[1]) + " vs " + type_str(c.in[2]));
           return TensorType{c.in[1].dtype,
                             broadcast_shapes(c.in[0].shape, broadcast_shapes(c.in[1].shape, c.in[2].shape))};
         },
         .pattern = OpPattern::elementwise,
         .samples = {{{{{-1, 17}, 0, 2, DType::boolean}, {{-1, 17}}, {{-1, 17}}}},
                     {{{{17}, 0, 2, DType::boolean}, {{-1, 1}}, {{}}}}}});

  r.add({.name = "where", .family = "elementwise", .summary = "cond ? x : y (another name for select)",
         .inputs = {"cond", "x", "y"}, .shape_rule = "as select",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs&) { return b.add("select", in); },
         .pattern = OpPattern::elementwise,
         .samples = {{{{{-1, 17}, 0, 2, DType::boolean}, {{-1, 17}}, {{17}}}}}});

  auto logical = [&](const char* name, const char* summary, std::vector<std::string> inputs) {
    r.add({.name = name, .family = "elementwise", .summary = summary, .inputs = inputs,
           .shape_rule = inputs.size() == 1 ? "bool[S] -> bool[S]" : "bool[S1], bool[S2] -> bool[broadcast(S1, S2)]",
           .infer = [](const InferCtx& c) {
             Shape shape = c.in[0].shape;
             for (const TensorType& t : c.in) {
               if (t.dtype != DType::boolean) throw OpError("needs bool tensors, got " + type_str(t));
               shape = broadcast_shapes(shape, t.shape);
             }
             return TensorType{DType::boolean, shape};
           },
           .no_grad = true, .pattern = OpPattern::elementwise,
           .samples = inputs.size() == 1 ? unary_samples({0, 2}, DType::boolean)
                                         : binary_samples({0, 2}, {0, 2}, DType::boolean)});
  };
  logical("logical_not", "not x", {"x"});
  logical("logical_and", "x and y", {"x", "y"});
  logical("logical_or", "x or y", {"x", "y"});
  logical("logical_xor", "x xor y (true where exactly one is)", {"x", "y"});

  r.add({.name = "cast", .family = "elementwise", .summary = "convert the element type (bool -> 0/1, float -> int truncates)",
         .inputs = {"x"},
         .attrs = {{"dtype", AttrKind::Enum, true, nullptr, "target type", {"f32", "f64", "i32", "i64", "bool"}}},
         .shape_rule = "x: S -> dtype[S]",
         .infer = [](const InferCtx& c) { return TensorType{*parse_dtype(c.s("dtype")), c.in[0].shape}; },
         .pattern = OpPattern::elementwise,
         // Casts to integers have steps, but no gradient flows through them;
         // float-to-float casts are smooth, so no kinks are declared.
         .algebra = {.noop_if_type_unchanged = true},
         .samples = {{{{{-1, 17}, -3, 3}}, {{"dtype", "f64"}}},
                     {{{{-1, 17}, -3, 3}}, {{"dtype", "i32"}}},
                     {{{{33}, -3, 3}}, {{"dtype", "i64"}}},
                     {{{{33}, -3, 3}}, {{"dtype", "bool"}}},
                     {{{{33}, -3, 3, DType::i32}}, {{"dtype", "f32"}}},
                     {{{{33}, 0, 2, DType::boolean}}, {{"dtype", "f32"}}}}});
}

// ---- gradient rules (compiler/autodiff calls them) ----
// Binary ops broadcast, so each cotangent is summed back to its operand's shape.
static void add_elementwise_gradients(OpRegistry& r) {
  auto to_shape = [](GradCtx& c, NodeId g, int input) { return c.b.reduce_to_shape(g, c.type(c.x[input]).shape); };
  r.find_mut("add")->grad = [=](GradCtx& c) -> std::vector<NodeId> {
    return {to_shape(c, c.dy, 0), to_shape(c, c.dy, 1)};
  };
  r.find_mut("sub")->grad = [=](GradCtx& c) -> std::vector<NodeId> {
    return {to_shape(c, c.dy, 0), to_shape(c, c.b.add1("neg", c.dy), 1)};
  };
  r.find_mut("mul")->grad = [=](GradCtx& c) -> std::vector<NodeId> {
    return {to_shape(c, c.b.add2("mul", c.dy, c.x[1]), 0), to_shape(c, c.b.add2("mul", c.dy, c.x[0]), 1)};
  };
  // d(x/y)/dy = -x/y^2: dy * -(x/y)/y = -(dy/y) * (x/y), reusing dy/y and the forward quotient.
  r.find_mut("div")->grad = [=](GradCtx& c) -> std::vector<NodeId> {
    NodeId dx = c.b.add2("div", c.dy, c.x[1]);
    NodeId dyy = c.b.add1("neg", c.b.add2("mul", dx, c.y));
    return {to_shape(c, dx, 0), to_shape(c, dyy, 1)};
  };
  // The gradient goes to x where x > y, else to y (ties go to y: relu'(0) = 0).
  r.find_mut("maximum")->grad = [=](GradCtx& c) -> std::vector<NodeId> {
    NodeId x_wins = c.b.add("compare", {c.x[0], c.x[1]}, {{"kind", "gt"}});
    NodeId zero = c.b.scalar_like(0.0, c.dy);
    return {to_shape(c, c.b.add("select", {x_wins, c.dy, zero}), 0),
            to_shape(c, c.b.add("select", {x_wins, zero, c.dy}), 1)};
  };
  r.find_mut("neg")->grad = [](GradCtx& c) -> std::vector<NodeId> { return {c.b.add1("neg", c.dy)}; };
  r.find_mut("exp")->grad = [](GradCtx& c) -> std::vector<NodeId> { return {c.b.add2("mul", c.dy, c.y)}; };
  r.find_mut("log")->grad = [](GradCtx& c) -> std::vector<NodeId> { return {c.b.add2("div", c.dy, c.x[0])}; };
  r.find_mut("sqrt")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    return {c.b.add2("div", c.b.add2("mul", c.dy, c.b.scalar_like(0.5, c.dy)), c.y)};
  };
  // dy * (2x), in that order: when dy is a broadcast (the gradient of a sum),
  // the algebra pass folds it into this mul instead of materializing it.
  r.find_mut("square")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    return {c.b.add2("mul", c.dy, c.b.add2("mul", c.x[0], c.b.scalar_like(2.0, c.x[0])))};
  };
  // sigmoid' = y (1 - y), from the forward output.
  r.find_mut("sigmoid")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    NodeId one_minus_y = c.b.add2("sub", c.b.scalar_like(1.0, c.y), c.y);
    return {c.b.add2("mul", c.dy, c.b.add2("mul", c.y, one_minus_y))};
  };
  // No gradient to the condition; each branch gets dy where it was chosen.
  r.find_mut("select")->grad = [=](GradCtx& c) -> std::vector<NodeId> {
    NodeId zero = c.b.scalar_like(0.0, c.dy);
    return {kNoNode, to_shape(c, c.b.add("select", {c.x[0], c.dy, zero}), 1),
            to_shape(c, c.b.add("select", {c.x[0], zero, c.dy}), 2)};
  };
  // float -> float passes the gradient through (in the input's dtype); any
  // cast from or to integers or bool is piecewise constant: no gradient.
  r.find_mut("cast")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    DType from = c.type(c.x[0]).dtype, to = c.type(c.y).dtype;
    if (!is_float(from) || !is_float(to)) return {kNoNode};
    if (from == to) return {c.dy};
    return {c.b.add("cast", {c.dy}, {{"dtype", dtype_name(from)}})};
  };
}

// ---- reference kernels (compiler/interp runs them) ----
template <class F>
static interp::Array map_each(const interp::Array& x, F f) {
  interp::Array out = interp::Array::from_shape(x.shape());
  auto o = out.begin();
  for (double v : x) *o++ = f(v);
  return out;
}

// Two branches so that exp never overflows: e^-x for x >= 0, e^x below.
static double stable_sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  double e = std::exp(x);
  return e / (1.0 + e);
}

// Binary ops broadcast with numpy rules (xtensor's), computed in double.
static void add_elementwise_reference(OpRegistry& r) {
  using interp::Array;
  using interp::RefCtx;
  r.find_mut("add")->reference = [](RefCtx& c) { c.out = *c.in[0] + *c.in[1]; };
  r.find_mut("sub")->reference = [](RefCtx& c) { c.out = *c.in[0] - *c.in[1]; };
  r.find_mut("mul")->reference = [](RefCtx& c) { c.out = *c.in[0] * *c.in[1]; };
  r.find_mut("div")->reference = [](RefCtx& c) {
    c.out = *c.in[0] / *c.in[1];
    if (is_float(c.node.type.dtype)) return;
    // Integer division truncates toward zero, as in C.
    if (xt::any(xt::equal(*c.in[1], 0.0))) throw std::runtime_error("integer division by zero");
    for (double& v : c.out) v = std::trunc(v);
  };
  r.find_mut("maximum")->reference = [](RefCtx& c) {  // a NaN in either operand gives a NaN (interp::nan_max)
    const Array &x = *c.in[0], &y = *c.in[1];
    c.out = xt::where(xt::isnan(x) || x > y, x, y);
  };

  r.find_mut("neg")->reference = [](RefCtx& c) { c.out = -*c.in[0]; };
  r.find_mut("exp")->reference = [](RefCtx& c) { c.out = xt::exp(*c.in[0]); };
  r.find_mut("log")->reference = [](RefCtx& c) { c.out = xt::log(*c.in[0]); };
  r.find_mut("sqrt")->reference = [](RefCtx& c) { c.out = xt::sqrt(*c.in[0]); };
  r.find_mut("square")->reference = [](RefCtx& c) { c.out = *c.in[0] * *c.in[0]; };
  r.find_mut("sigmoid")->reference = [](RefCtx& c) { c.out = map_each(*c.in[0], stable_sigmoid); };

  r.find_mut("compare")->reference = [](RefCtx& c) {
    const Array &x = *c.in[0], &y = *c.in[1];
    std::string kind = c.attrs.at("kind");
    if (kind == "lt") c.out = xt::where(xt::less(x, y), 1.0, 0.0);
    else if (kind == "le") c.out = xt::where(xt::less_equal(x, y), 1.0, 0.0);
    else if (kind == "gt") c.out = xt::where(xt::greater(x, y), 1.0, 0.0);
    else if (kind == "ge") c.out = xt::where(xt::greater_equal(x, y), 1.0, 0.0);
    else if (kind == "eq") c.out = xt::where(xt::equal(x, y), 1.0, 0.0);
    else c.out = xt::where(xt::not_equal(x, y), 1.0, 0.0);
  };
  r.find_mut("select")->reference = [](RefCtx& c) {
    c.out = xt::where(xt::not_equal(*c.in[0], 0.0), *c.in[1], *c.in[2]);
  };
  r.find_mut("logical_not")->reference = [](RefCtx& c) { c.out = xt::where(xt::equal(*c.in[0], 0.0), 1.0, 0.0); };
  r.find_mut("logical_and")->reference = [](RefCtx& c) {
    c.out = xt::where(xt::not_equal(*c.in[0], 0.0) && xt::not_equal(*c.in[1], 0.0), 1.0, 0.0);
  };
  r.find_mut("logical_or")->reference = [](RefCtx& c) {
    c.out = xt::where(xt::not_equal(*c.in[0], 0.0) || xt::not_equal(*c.in[1], 0.0), 1.0, 0.0);
  };
  r.find_mut("logical_xor")->reference = [](RefCtx& c) {
    c.out = xt::where(xt::not_equal(xt::not_equal(*c.in[0], 0.0), xt::not_equal(*c.in[1], 0.0)), 1.0, 0.0);
  };
  r.find_mut("cast")->reference = [](RefCtx& c) {
    DType to = c.node.type.dtype;
    if (to == DType::boolean) c.out = map_each(*c.in[0], [](double v) { return v != 0 ? 1.0 : 0.0; });
    else if (!is_float(to)) {
      // Toward zero, saturating at the type's ends, NaN -> 0 (the generated code's fptosi.sat).
      double lo = to == DType::i32 ? -2147483648.0 : -9223372036854775808.0;
      double hi = to == DType::i32 ? 2147483647.0 : 9223372036854775807.0;  // i64: rounds to 2^63, as the JIT's
      c.out = map_each(*c.in[0], [lo, hi](double v) { return std::isnan(v) ? 0.0 : std::clamp(std::trunc(v), lo, hi); });
    }
    else c.out = *c.in[0];  // to f32: the interpreter rounds every f32 result
  };
}

// ---- lowering to loop IR (compiler/lower) ----
static void add_elementwise_lowering(OpRegistry& r) {
  using namespace lower;
  auto binary = [&](const char* name, E (*f)(E, E)) {
    r.find_mut(name)->lower = [name, f](LowerCtx& c) {
      c.elementwise([f](const std::vector<E>& v) { return f(v[0], v[1]); }, std::string(name) + " elementwise");
    };
  };
  binary("add", [](E a, E b) { return a + b; });
  binary("sub", [](E a, E b) { return a - b; });
  binary("mul", [](E a, E b) { return a * b; });
  binary("div", [](E a, E b) { return a / b; });
  binary("maximum", [](E a, E b) { return max(a, b); });
  auto unary = [&](const char* name, E (*f)(E)) {
    r.find_mut(name)->lower = [name, f](LowerCtx& c) {
      c.elementwise([f](const std::vector<E>& v) { return f(v[0]); }, std::string(name) + " elementwise");
    };
  };
  unary("neg", [](E x) { return -x; });
  unary("exp", [](E x) { return exp(x); });
  unary("log", [](E x) { return log(x); });
  unary("sqrt", [](E x) { return sqrt(x); });
  unary("square", [](E x) { return x * x; });
  // One exp, never overflowing: e = exp(-|x|); x >= 0 ? 1/(1+e) : e/(1+e).
  unary("sigmoid", [](E x) {
    E one = lit(1.0, x.type());
    E e = exp(-abs(x));
    E s = one / (one + e);
    return select(x >= lit(0.0, x.type()), s, e * s);
  });
  r.find_mut("compare")->lower = [](LowerCtx& c) {
    std::string kind = c.attrs.at("kind");
    c.elementwise([kind](const std::vector<E>& v) {
      if (kind == "lt") return v[0] < v[1];
      if (kind == "le") return v[0] <= v[1];
      if (kind == "gt") return v[0] > v[1];
      if (kind == "ge") return v[0] >= v[1];
      if (kind == "eq") return v[0] == v[1];
      return v[0] != v[1];
    }, "compare " + kind);
  };
  r.find_mut("select")->lower = [](LowerCtx& c) {
    c.elementwise([](const std::vector<E>& v) { return select(v[0], v[1], v[2]); }, "select elementwise");
  };
  unary("logical_not", [](E x) { return logical_not(x); });
  binary("logical_and", [](E a, E b) { return a && b; });
  binary("logical_or", [](E a, E b) { return logical_or(a, b); });
  binary("logical_xor", [](E a, E b) { return a != b; });
  r.find_mut("cast")->lower = [](LowerCtx& c) {
    Scalar to = c.out.scalar();
    c.elementwise([to](const std::vector<E>& v) { return cast(v[0], to); },
                  "cast to " + std::string(scalar_name(to)));
  };
}

// One registration for the family: its ops, then their gradients, reference
// kernels and lowerings.
void register_elementwise_family(OpRegistry& r) {
  add_elementwise_ops(r);
  add_elementwise_gradients(r);
  add_elementwise_reference(r);
  add_elementwise_lowering(r);
}

}  // namespace kiln
