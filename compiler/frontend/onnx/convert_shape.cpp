// ONNX ops whose results are known at import: constants and the shape
// arithmetic exporters emit (Shape, Size, ConstantOfShape, Range, EyeLike).
// Their outputs become values the importer folds into their readers.
#include <algorithm>
#include <cmath>

#include "compiler/frontend/onnx/convert.h"

namespace kiln::onnx {

namespace {

interp::Value ints_value(const std::vector<int64_t>& v, DType dt = DType::i64) {
  interp::Value out{dt, {static_cast<int64_t>(v.size())}, {}};
  for (int64_t x : v) out.data.push_back(static_cast<double>(x));
  return out;
}

const Shape& static_shape(NodeCtx& c, int i, const char* op) {
  const Shape& s = c.shape(i);
  if (has_open_dim(s)) unsupported(std::string(op) + " of a value with an open batch dimension");
  return s;
}

}  // namespace

void register_shape_ops(ConverterTable& t) {
  t["Constant"] = [](NodeCtx& c) {
    interp::Value v;
    if (auto tensor = c.attr_tensor("value")) v = *tensor;
    else if (c.has_attr("value_float")) v = {DType::f32, {}, {c.attr_float("value_float", 0)}};
    else if (c.has_attr("value_int")) v = {DType::i64, {}, {static_cast<double>(c.attr_int("value_int", 0))}};
    else if (c.has_attr("value_floats")) {
      auto f = c.attr_floats("value_floats");
      v = {DType::f32, {static_cast<int64_t>(f.size())}, f};
    } else if (c.has_attr("value_ints")) v = ints_value(c.attr_ints("value_ints"));
    else if (c.has_attr("sparse_value")) unsupported("sparse_value");
    else if (c.has_attr("value_string") || c.has_attr("value_strings")) unsupported("dtype string");
    else invalid("Constant without a value");
    if (v.dtype == DType::f32)
      for (double& x : v.data) x = static_cast<double>(static_cast<float>(x));
    c.out_known(0, std::move(v));
  };
  t["Shape"] = [](NodeCtx& c) {
    const Shape& s = c.shape(0);  // an open batch dimension reads as kBatchSizeAtImport
    int64_t r = static_cast<int64_t>(s.size());
    auto clamp = [r](int64_t a) { return std::clamp<int64_t>(a < 0 ? a + r : a, 0, r); };
    int64_t start = clamp(c.attr_int("start", 0)), end = clamp(c.attr_int("end", r));
    std::vector<int64_t> dims;
    for (int64_t i = start; i < end; ++i) {
      int64_t d = s[static_cast<size_t>(i)];
      dims.push_back(d == kOpenDim ? kBatchSizeAtImport : d);
    }
    c.out_known(0, ints_value(dims));
  };
  t["Size"] = [](NodeCtx& c) {
    const Shape& s = static_shape(c, 0, "Size");
    c.out_known(0, interp::Value{DType::i64, {}, {static_cast<double>(numel(s))}});
  };
  t["ConstantOfShape"] = [](NodeCtx& c) {
    std::vector<int64_t> shape = c.need_ints(0, "shape");
    interp::Value fill{DType::f32, {}, {0}};
    if (auto v = c.attr_tensor("value")) {
      if (v->data.size() != 1) invalid("value must hold one element");
      fill = *v;
    }
    interp::Value out{fill.dtype, Shape(shape.begin(), shape.end()), {}};
    for (int64_t d : shape)
      if (d < 0) invalid("negative dimension in shape");
    bool empty = std::find(shape.begin(), shape.end(), 0) != shape.end();
    check_known_count(empty ? 0 : numel(out.shape));  // numel saturates: no wrapped product
    out.data.assign(static_cast<size_t>(numel(out.shape)), fill.data[0]);
    c.out_known(0, std::move(out));
  };
  t["Range"] = [](NodeCtx& c) {
    auto one = [&](int i, const char* what) {
      const interp::Value& v = c.need_known(i, what);
      if (v.data.size() != 1) invalid(std::string(what) + " must be a scalar");
      return v.data[0];
    };
    double start = one(0, "start"), limit = one(1, "limit"), delta = one(2, "delta");
    if (delta == 0) invalid("delta is 0");
    DType dt = c.dtype(0);
    double steps = std::ceil((limit - start) / delta);
    if (!(steps <= static_cast<double>(kMaxKnownElements))) check_known_count(kMaxKnownElements + 1);
    int64_t n = std::max<int64_t>(0, static_cast<int64_t>(steps));
    interp::Value out{dt, {n}, {}};
    for (int64_t i = 0; i < n; ++i) {
      double x = start + static_cast<double>(i) * delta;
      out.data.push_back(dt == DType::f32 ? static_cast<double>(static_cast<float>(x)) : x);
    }
    c.out_known(0, std::move(out));
  };
  t["EyeLike"] = [](NodeCtx& c) {
    const Shape& s = static_shape(c, 0, "EyeLike");
    if (s.size() != 2) invalid("EyeLike needs a 2-D input");
    check_known_count(s[0] * s[1]);
    int64_t k = c.attr_int("k", 0);
    DType dt = c.has_attr("dtype") ? dtype_of_onnx(static_cast<int32_t>(c.attr_int("dtype", 1))) : c.dtype(0);
    interp::Value out{dt, s, {}};
    for (int64_t i = 0; i < s[0]; ++i)
      for (int64_t j = 0; j < s[1]; ++j) out.data.push_back(j - i == k ? 1 : 0);
    c.out_known(0, std::move(out));
  };
  // Window functions: a0 - a1 cos(2 pi n / D) + a2 cos(4 pi n / D), D = N
  // (periodic) or N - 1 (symmetric); known at import from the size.
  auto window = [](double a0, double a1, double a2) {
    return [=](NodeCtx& c) {
      auto size = c.need_ints(0, "size");
      if (size.size() != 1 || size[0] < 1) invalid("size must be one positive integer");
      bool periodic = c.attr_int("periodic", 1) != 0;
      DType dt = dtype_of_onnx(static_cast<int32_t>(c.attr_int("output_datatype", 1)));
      int64_t n = size[0];
      check_known_count(n);
      double d = static_cast<double>(periodic ? n : n - 1);
      interp::Value out{dt, {n}, {}};
      for (int64_t i = 0; i < n; ++i) {
        double x = 2 * M_PI * static_cast<double>(i) / d;
        double v = a0 - a1 * std::cos(x) + a2 * std::cos(2 * x);
        out.data.push_back(dt == DType::f32 ? static_cast<double>(static_cast<float>(v)) : v);
      }
      c.out_known(0, std::move(out));
    };
  };
  t["HannWindow"] = window(0.5, 0.5, 0);
  t["HammingWindow"] = window(25.0 / 46.0, 21.0 / 46.0, 0);
  t["BlackmanWindow"] = window(0.42, 0.5, 0.08);
  // ONNX's Gradient (the preview training domain): d y / d xs through kiln's
  // autodiff; the node's inputs are the values xs names, y any earlier value.
  t["training:Gradient"] = [](NodeCtx& c) {
    std::vector<std::string> xs = c.attr_strings("xs");
    std::string y = c.attr_string("y", "");
    c.attr_strings("zs");
    if (xs.empty() || y.empty()) invalid("Gradient needs xs and y");
    if (static_cast<int>(xs.size()) != c.outputs()) invalid("Gradient has one output per name in xs");
    std::vector<std::string> wrt;
    for (auto& x : xs) wrt.push_back(c.value_node(x));
    std::vector<std::string> grads = c.gradient(c.value_node(y), wrt);
    for (int i = 0; i < c.outputs(); ++i) c.out(i, grads[static_cast<size_t>(i)]);
  };
  t["Dropout"] = [](NodeCtx& c) {
    // Inference: the identity (and an all-true mask). A training-mode Dropout
    // (opset 12's third input true) draws, which import cannot fold.
    c.attr_int("is_test", 0);
    c.attr_float("ratio", 0.5);
    c.attr_int("seed", 0);
    if (c.has(2)) {
      const interp::Value& training = c.need_known(2, "training_mode");
      if (!training.data.empty() && training.data[0] != 0) unsupported("Dropout in training mode (random; use kiln's dropout layer)");
    }
    c.emit_out(0, "add", {c.in(0), c.scalar(0, c.dtype(0))});
    if (c.wants(1)) {
      interp::Value mask{DType::boolean, c.shape(0), {}};
      if (has_open_dim(mask.shape)) unsupported("Dropout's mask output for an open batch dimension");
      mask.data.assign(static_cast<size_t>(numel(mask.shape)), 1);
      c.out_known(1, std::move(mask));
    }
  };
}

}  // namespace kiln::onnx
