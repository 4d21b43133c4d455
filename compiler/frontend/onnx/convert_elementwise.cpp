// ONNX elementwise ops: math, comparisons, logic, activations, casts.
// Ops kiln has as primitives or composites map one to one; the rest are
// written from kiln ops by their ONNX definitions.
#include <cmath>

#include "compiler/frontend/onnx/convert.h"

namespace kiln::onnx {

using json = nlohmann::json;

namespace {

void unary(ConverterTable& t, const char* onnx_op, const char* kiln_op) {
  t[onnx_op] = [kiln_op](NodeCtx& c) { c.emit_out(0, kiln_op, {c.in(0)}); };
}

void binary(ConverterTable& t, const char* onnx_op, const char* kiln_op) {
  t[onnx_op] = [kiln_op](NodeCtx& c) {
    // Before opset 7, broadcasting was opt-in through `broadcast` and `axis`.
    // With an axis, y's dimensions line up with x's from that axis on.
    std::string y = c.in(1);
    if (c.opset() < 7 && c.attr_int("broadcast", 0) != 0 && c.has_attr("axis")) {
      int64_t axis = NodeCtx::axis(c.attr_int("axis", 0), c.rank(0));
      std::vector<int64_t> trailing;
      for (int64_t a = axis + c.rank(1); a < c.rank(0); ++a) trailing.push_back(a - axis);
      if (!trailing.empty()) y = c.emit("unsqueeze", {y}, {{"axes", ints_json(trailing)}});
    }
    c.emit_out(0, kiln_op, {c.in(0), y});
  };
}

void compare(ConverterTable& t, const char* onnx_op, const char* kind) {
  t[onnx_op] = [kind](NodeCtx& c) { c.emit_out(0, "compare", {c.in(0), c.in(1)}, {{"kind", kind}}); };
}

// Sum, Mean, Max, Min: any number of inputs, folded left to right.
void variadic(ConverterTable& t, const char* onnx_op, const char* kiln_op, bool mean) {
  t[onnx_op] = [kiln_op, mean](NodeCtx& c) {
    std::string acc = c.in(0);
    for (int i = 1; i < c.inputs(); ++i) acc = c.emit(kiln_op, {acc, c.in(i)});
    if (mean) acc = c.emit("div", {acc, c.scalar(c.inputs(), c.dtype(0))});
    else if (c.inputs() == 1) acc = c.emit("add", {acc, c.scalar(0, c.dtype(0))});  // a node of its own for the output
    c.out(0, acc);
  };
}

std::string relu_with(NodeCtx& c, const std::string& x, const std::string& negative_branch) {
  std::string zero = c.scalar(0, c.kiln_type(x).dtype);
  return c.emit("select", {c.emit("compare", {x, zero}, {{"kind", "lt"}}), negative_branch, x});
}

}  // namespace

void register_elementwise(ConverterTable& t) {
  for (auto [o, k] : std::initializer_list<std::pair<const char*, const char*>>{
           {"Abs", "abs"}, {"Neg", "neg"}, {"Exp", "exp"}, {"Log", "log"}, {"Sqrt", "sqrt"}, {"Reciprocal", "reciprocal"},
           {"Floor", "floor"}, {"Ceil", "ceil"}, {"Round", "round"}, {"Sin", "sin"}, {"Cos", "cos"}, {"Atan", "atan"}, {"Tanh", "tanh"},
           {"Sigmoid", "sigmoid"}, {"Erf", "erf"}, {"Sign", "sign"}, {"Relu", "relu"}, {"Softplus", "softplus"},
           {"IsNaN", "isnan"}, {"Not", "logical_not"}, {"HardSwish", "hard_swish"}})
    unary(t, o, k);
  for (auto [o, k] : std::initializer_list<std::pair<const char*, const char*>>{
           {"Add", "add"}, {"Sub", "sub"}, {"Mul", "mul"}, {"Div", "div"}, {"And", "logical_and"}, {"Or", "logical_or"},
           {"Xor", "logical_xor"}})
    binary(t, o, k);
  compare(t, "Equal", "eq");
  compare(t, "Less", "lt");
  compare(t, "Greater", "gt");
  compare(t, "LessOrEqual", "le");
  compare(t, "GreaterOrEqual", "ge");
  variadic(t, "Sum", "add", false);
  variadic(t, "Mean", "add", true);
  variadic(t, "Max", "maximum", false);
  variadic(t, "Min", "minimum", false);

  t["Identity"] = [](NodeCtx& c) {
    if (const interp::Value* v = c.known(0)) return c.out_known(0, *v);
    c.out(0, c.in(0));
  };
  t["Pow"] = [](NodeCtx& c) {
    std::string x = c.in(0), y = c.in(1);
    DType dt = c.dtype(0);
    // kiln's pow is real: integers go through f64 (exact for the results an integer holds).
    DType real = is_float(dt) ? dt : DType::f64;
    if (dt != real) x = c.emit("cast", {x}, {{"dtype", "f64"}});
    if (c.dtype(1) != real) y = c.emit("cast", {y}, {{"dtype", dtype_name(real)}});
    std::string p = c.emit("pow", {x, y});
    if (dt != real) p = c.emit("cast", {c.emit("round", {p})}, {{"dtype", dtype_name(dt)}});
    c.out(0, p);
  };
  t["Mod"] = [](NodeCtx& c) {
    bool fmod = c.attr_int("fmod", 0) != 0;
    std::string x = c.in(0), y = c.in(1);
    if (!fmod) return void(c.emit_out(0, "mod", {x, y}));
    // fmod: the remainder takes the dividend's sign: x - trunc(x / y) * y.
    if (!is_float(c.dtype(0))) return void(c.emit_out(0, "sub", {x, c.emit("mul", {c.emit("div", {x, y}), y})}));
    std::string m = c.emit("mod", {x, y});
    std::string zero = c.scalar(0, c.dtype(0));
    // Python's % and fmod differ by y where the remainder is nonzero and x, y differ in sign.
    std::string differ = c.emit("logical_and", {c.emit("compare", {m, zero}, {{"kind", "ne"}}),
                                                c.emit("compare", {c.emit("compare", {x, zero}, {{"kind", "lt"}}),
                                                                   c.emit("compare", {y, zero}, {{"kind", "lt"}})},
                                                       {{"kind", "ne"}})});
    c.emit_out(0, "select", {differ, c.emit("sub", {m, y}), m});
  };
  t["Where"] = [](NodeCtx& c) { c.emit_out(0, "select", {c.in(0), c.in(1), c.in(2)}); };
  t["IsInf"] = [](NodeCtx& c) {
    bool pos = c.attr_int("detect_positive", 1) != 0, neg = c.attr_int("detect_negative", 1) != 0;
    std::string x = c.in(0);
    std::string inf = c.emit("isinf", {x});
    if (pos && neg) return c.out(0, inf);
    std::string zero = c.scalar(0, c.dtype(0));
    std::string side = c.emit("compare", {x, zero}, {{"kind", pos ? "gt" : "lt"}});
    if (!pos && !neg) side = c.emit("compare", {x, x}, {{"kind", "ne"}});  // all false (NaN aside: isinf is false there)
    c.emit_out(0, "logical_and", {inf, side});
  };
  t["Cast"] = [](NodeCtx& c) {
    DType to = dtype_of_onnx(static_cast<int32_t>(c.attr_int("to")));
    c.attr_int("saturate", 1);
    if (to == c.dtype(0)) return c.out(0, c.in(0));
    c.emit_out(0, "cast", {c.in(0)}, {{"dtype", dtype_name(to)}});
  };
  t["CastLike"] = [](NodeCtx& c) {
    c.attr_int("saturate", 1);
    DType to = c.dtype(1);
    if (to == c.dtype(0)) return c.out(0, c.in(0));
    c.emit_out(0, "cast", {c.in(0)}, {{"dtype", dtype_name(to)}});
  };
  t["Clip"] = [](NodeCtx& c) {
    std::string x = c.in(0);
    DType dt = c.dtype(0);
    std::string lo, hi;
    if (c.opset() < 11) {
      lo = c.scalar(c.attr_float("min", -INFINITY), dt);
      hi = c.scalar(c.attr_float("max", INFINITY), dt);
      if (c.attr_float("min", -INFINITY) == -INFINITY) lo.clear();
      if (c.attr_float("max", INFINITY) == INFINITY) hi.clear();
    } else {
      if (c.has(1)) lo = c.in(1);
      if (c.has(2)) hi = c.in(2);
    }
    if (!lo.empty()) x = c.emit("maximum", {x, lo});
    if (!hi.empty()) x = c.emit("minimum", {x, hi});
    if (lo.empty() && hi.empty()) x = c.emit("add", {x, c.scalar(0, dt)});
    c.out(0, x);
  };
  t["LeakyRelu"] = [](NodeCtx& c) { c.emit_out(0, "leaky_relu", {c.in(0)}, {{"alpha", c.attr_float("alpha", 0.01)}}); };
  t["Elu"] = [](NodeCtx& c) { c.emit_out(0, "elu", {c.in(0)}, {{"alpha", c.attr_float("alpha", 1.0)}}); };
  t["Selu"] = [](NodeCtx& c) {
    double alpha = c.attr_float("alpha", 1.67326319217681884765625), gamma = c.attr_float("gamma", 1.05070102214813232421875);
    std::string x = c.in(0);
    DType dt = c.dtype(0);
    // gamma * (x > 0 ? x : alpha * (e^x - 1))
    std::string neg = c.emit("mul", {c.scalar(alpha, dt), c.emit("sub", {c.emit("exp", {x}), c.scalar(1, dt)})});
    std::string pos = c.emit("compare", {x, c.scalar(0, dt)}, {{"kind", "gt"}});
    c.emit_out(0, "mul", {c.scalar(gamma, dt), c.emit("select", {pos, x, neg})});
  };
  t["Celu"] = [](NodeCtx& c) {
    double alpha = c.attr_float("alpha", 1.0);
    std::string x = c.in(0);
    DType dt = c.dtype(0);
    // max(0, x) + min(0, alpha * (e^(x/alpha) - 1))
    std::string e = c.emit("sub", {c.emit("exp", {c.emit("div", {x, c.scalar(alpha, dt)})}), c.scalar(1, dt)});
    c.emit_out(0, "add", {c.emit("maximum", {x, c.scalar(0, dt)}),
                          c.emit("minimum", {c.emit("mul", {e, c.scalar(alpha, dt)}), c.scalar(0, dt)})});
  };
  t["HardSigmoid"] = [](NodeCtx& c) {
    c.emit_out(0, "hard_sigmoid", {c.in(0)}, {{"alpha", c.attr_float("alpha", 0.2)}, {"beta", c.attr_float("beta", 0.5)}});
  };
  t["ThresholdedRelu"] = [](NodeCtx& c) {
    std::string x = c.in(0);
    DType dt = c.dtype(0);
    std::string above = c.emit("compare", {x, c.scalar(c.attr_float("alpha", 1.0), dt)}, {{"kind", "gt"}});
    c.emit_out(0, "select", {above, x, c.scalar(0, dt)});
  };
  t["Softsign"] = [](NodeCtx& c) {
    std::string x = c.in(0);
    c.emit_out(0, "div", {x, c.emit("add", {c.scalar(1, c.dtype(0)), c.emit("abs", {x})})});
  };
  t["Shrink"] = [](NodeCtx& c) {
    double bias = c.attr_float("bias", 0.0), lambd = c.attr_float("lambd", 0.5);
    std::string x = c.in(0);
    DType dt = c.dtype(0);
    std::string below = c.emit("compare", {x, c.scalar(-lambd, dt)}, {{"kind", "lt"}});
    std::string above = c.emit("compare", {x, c.scalar(lambd, dt)}, {{"kind", "gt"}});
    std::string zero = c.scalar(0, dt);
    std::string hi = c.emit("select", {above, c.emit("sub", {x, c.scalar(bias, dt)}), zero});
    c.emit_out(0, "select", {below, c.emit("add", {x, c.scalar(bias, dt)}), hi});
  };
  t["PRelu"] = [](NodeCtx& c) {
    std::string x = c.in(0), slope = c.in(1);
    // ONNX broadcasts the slope numpy style; older exporters give it per
    // channel as [C] (axis 1), which numpy rules would align with the last axis.
    const Shape& xs = c.shape(0);
    const Shape& ss = c.shape(1);
    if (ss.size() == 1 && xs.size() > 2 && ss[0] != 1 && ss[0] == xs[1] && xs.back() != ss[0]) {
      std::vector<int64_t> axes;
      for (size_t a = 1; a + 1 < xs.size(); ++a) axes.push_back(static_cast<int64_t>(a));
      slope = c.emit("unsqueeze", {slope}, {{"axes", ints_json(axes)}});
    }
    c.out(0, relu_with(c, x, c.emit("mul", {x, slope})));
  };
  t["Tan"] = [](NodeCtx& c) {
    std::string x = c.in(0);
    c.emit_out(0, "div", {c.emit("sin", {x}), c.emit("cos", {x})});
  };
  t["Asin"] = [](NodeCtx& c) {  // atan(x / sqrt((1 - x)(1 + x)))
    std::string x = c.in(0), one = c.scalar(1, c.dtype(0));
    std::string root = c.emit("sqrt", {c.emit("mul", {c.emit("sub", {one, x}), c.emit("add", {one, x})})});
    c.emit_out(0, "atan", {c.emit("div", {x, root})});
  };
  t["Acos"] = [](NodeCtx& c) {  // 2 atan(sqrt((1 - x) / (1 + x))): accurate near 1 too
    std::string x = c.in(0), one = c.scalar(1, c.dtype(0));
    std::string ratio = c.emit("div", {c.emit("sub", {one, x}), c.emit("add", {one, x})});
    c.emit_out(0, "mul", {c.scalar(2, c.dtype(0)), c.emit("atan", {c.emit("sqrt", {ratio})})});
  };
  t["Sinh"] = [](NodeCtx& c) {
    std::string x = c.in(0);
    DType dt = c.dtype(0);
    c.emit_out(0, "mul", {c.scalar(0.5, dt), c.emit("sub", {c.emit("exp", {x}), c.emit("exp", {c.emit("neg", {x})})})});
  };
  t["Cosh"] = [](NodeCtx& c) {
    std::string x = c.in(0);
    DType dt = c.dtype(0);
    c.emit_out(0, "mul", {c.scalar(0.5, dt), c.emit("add", {c.emit("exp", {x}), c.emit("exp", {c.emit("neg", {x})})})});
  };
  t["Asinh"] = [](NodeCtx& c) {  // log(x + sqrt(x^2 + 1))
    std::string x = c.in(0);
    c.emit_out(0, "log", {c.emit("add", {x, c.emit("sqrt", {c.emit("add", {c.emit("square", {x}), c.scalar(1, c.dtype(0))})})})});
  };
  t["Acosh"] = [](NodeCtx& c) {  // log(x + sqrt(x^2 - 1))
    std::string x = c.in(0);
    c.emit_out(0, "log", {c.emit("add", {x, c.emit("sqrt", {c.emit("sub", {c.emit("square", {x}), c.scalar(1, c.dtype(0))})})})});
  };
  t["Atanh"] = [](NodeCtx& c) {  // log((1 + x) / (1 - x)) / 2
    std::string x = c.in(0);
    DType dt = c.dtype(0);
    std::string one = c.scalar(1, dt);
    c.emit_out(0, "mul", {c.scalar(0.5, dt), c.emit("log", {c.emit("div", {c.emit("add", {one, x}), c.emit("sub", {one, x})})})});
  };
}

}  // namespace kiln::onnx
