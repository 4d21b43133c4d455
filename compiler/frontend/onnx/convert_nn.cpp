// ONNX neural-network ops: convolutions and pools (NCHW, kiln's layout
// attribute), normalizations, Gemm and MatMul, softmax and its kin.
#include <limits>
#include <numeric>

#include "compiler/frontend/onnx/convert_window.h"

namespace kiln::onnx {

using json = nlohmann::json;

// kernel_shape, strides, dilations, pads and auto_pad of a conv or pool over
// `spatial` (the input's spatial sizes); SAME_* become explicit pads.
Window window_of(NodeCtx& c, const Shape& spatial, std::vector<int64_t> kernel, bool has_dilations) {
  size_t n = spatial.size();
  Window w;
  std::vector<int64_t> declared = c.attr_ints("kernel_shape");
  if (kernel.empty()) kernel = declared;
  if (kernel.size() != n) invalid("kernel_shape must have " + std::to_string(n) + " entries");
  w.kernel = kernel;
  w.strides = c.attr_ints("strides", std::vector<int64_t>(n, 1));
  w.dilations = has_dilations ? c.attr_ints("dilations", std::vector<int64_t>(n, 1)) : std::vector<int64_t>(n, 1);
  w.pads = c.attr_ints("pads", std::vector<int64_t>(2 * n, 0));
  std::string auto_pad = c.attr_string("auto_pad", "NOTSET");
  if (w.strides.size() != n || w.dilations.size() != n || w.pads.size() != 2 * n)
    invalid("strides, dilations and pads must match the " + std::to_string(n) + " spatial axes");
  if (auto_pad == "VALID") {
    std::fill(w.pads.begin(), w.pads.end(), 0);
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    for (size_t i = 0; i < n; ++i) {
      if (spatial[i] < 0) unsupported("auto_pad over an open dimension");
      int64_t out = (spatial[i] + w.strides[i] - 1) / w.strides[i];
      int64_t total = std::max<int64_t>(0, (out - 1) * w.strides[i] + (w.kernel[i] - 1) * w.dilations[i] + 1 - spatial[i]);
      int64_t small = total / 2, big = total - small;
      w.pads[i] = auto_pad == "SAME_UPPER" ? small : big;
      w.pads[i + n] = auto_pad == "SAME_UPPER" ? big : small;
    }
  } else if (auto_pad != "NOTSET") {
    invalid("auto_pad '" + auto_pad + "'");
  }
  return w;
}

// A per-channel [C] vector shaped to broadcast over [N, C, spatial...].
std::string per_channel(NodeCtx& c, const std::string& v, int rank) {
  std::vector<int64_t> axes;
  for (int a = 1; a < rank - 1; ++a) axes.push_back(a);
  return axes.empty() ? v : c.emit("unsqueeze", {v}, {{"axes", ints_json(axes)}});
}

namespace {

// kiln's 2-D padding attribute [top, left, bottom, right].
json pads2d(const Window& w) { return ints_json({w.pads[0], w.pads[1], w.pads[2], w.pads[3]}); }

// 1-D windows run as 2-D ones of height 1.
Window as_2d(const Window& w) {
  return {{1, w.kernel[0]}, {1, w.strides[0]}, {1, w.dilations[0]}, {0, w.pads[0], 0, w.pads[1]}};
}

std::string unsqueeze(NodeCtx& c, const std::string& x, std::vector<int64_t> axes) {
  return c.emit("unsqueeze", {x}, {{"axes", ints_json(axes)}});
}
std::string squeeze(NodeCtx& c, const std::string& x, std::vector<int64_t> axes) {
  return c.emit("squeeze", {x}, {{"axes", ints_json(axes)}});
}

void check_spatial(NodeCtx& c, const char* op) {
  if (c.rank(0) < 3 || c.rank(0) > 5)
    unsupported(std::string(op) + " over " + std::to_string(c.rank(0) - 2) + " spatial axes (kiln has 1-D, 2-D and 3-D)");
}

void conv(NodeCtx& c) {
  check_spatial(c, "Conv");
  if (c.rank(1) != c.rank(0)) invalid("the filter's rank must equal the input's");
  if (c.rank(0) == 5) return conv3d(c);
  const Shape& x = c.shape(0);
  const Shape& wshape = c.shape(1);
  bool one_d = x.size() == 3;
  Window w = window_of(c, Shape(x.begin() + 2, x.end()), Shape(wshape.begin() + 2, wshape.end()), true);
  int64_t groups = c.attr_int("group", 1);
  std::string in = c.in(0), filt = c.in(1);
  if (one_d) in = unsqueeze(c, in, {2}), filt = unsqueeze(c, filt, {2}), w = as_2d(w);
  std::string y = c.emit("conv2d", {in, filt},
                         {{"strides", ints_json(w.strides)}, {"dilations", ints_json(w.dilations)}, {"padding", pads2d(w)},
                          {"groups", groups}, {"layout", "NCHW"}});
  if (one_d) y = squeeze(c, y, {2});
  if (c.has(2)) y = c.emit("add", {y, per_channel(c, c.in(2), static_cast<int>(x.size()))});
  c.out(0, y);
}

void conv_transpose(NodeCtx& c) {
  check_spatial(c, "ConvTranspose");
  if (c.rank(1) != c.rank(0)) invalid("the filter's rank must equal the input's");
  if (c.rank(0) == 5) unsupported("ConvTranspose over 3 spatial axes");
  const Shape& x = c.shape(0);
  const Shape& wshape = c.shape(1);
  bool one_d = x.size() == 3;
  size_t n = x.size() - 2;
  if (c.attr_int("group", 1) != 1) unsupported("grouped ConvTranspose");
  std::vector<int64_t> kernel(wshape.begin() + 2, wshape.end());
  std::vector<int64_t> output_shape = c.attr_ints("output_shape");
  std::vector<int64_t> output_padding = c.attr_ints("output_padding", std::vector<int64_t>(n, 0));
  std::string auto_pad = c.attr_string("auto_pad", "NOTSET");
  std::vector<int64_t> strides = c.attr_ints("strides", std::vector<int64_t>(n, 1));
  std::vector<int64_t> dilations = c.attr_ints("dilations", std::vector<int64_t>(n, 1));
  std::vector<int64_t> pads = c.attr_ints("pads", std::vector<int64_t>(2 * n, 0));
  c.attr_ints("kernel_shape");
  if (strides.size() != n || dilations.size() != n || pads.size() != 2 * n || output_padding.size() != n)
    invalid("strides, dilations, pads and output_padding must match the spatial axes");
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER" || !output_shape.empty()) {
    if (output_shape.empty())
      for (size_t i = 0; i < n; ++i) output_shape.push_back(x[i + 2] * strides[i]);
    if (output_shape.size() == n + 2) output_shape.erase(output_shape.begin(), output_shape.begin() + 2);
    for (size_t i = 0; i < n; ++i) {
      int64_t total = strides[i] * (x[i + 2] - 1) + output_padding[i] + (kernel[i] - 1) * dilations[i] + 1 - output_shape[i];
      if (total < 0) {  // the output is larger than the padding-free result: the rest is output padding
        output_padding[i] -= total;
        total = 0;
      }
      int64_t half = total / 2;
      pads[i] = auto_pad == "SAME_UPPER" ? half : total - half;
      pads[i + n] = total - pads[i];
    }
  } else if (auto_pad == "VALID") {
    std::fill(pads.begin(), pads.end(), 0);
  }
  std::string in = c.in(0), filt = c.in(1);
  json padding, outpad, s, d;
  if (one_d) {
    in = unsqueeze(c, in, {2});
    filt = unsqueeze(c, filt, {2});
    padding = ints_json({0, pads[0], 0, pads[1]});
    outpad = ints_json({0, output_padding[0]});
    s = ints_json({1, strides[0]});
    d = ints_json({1, dilations[0]});
  } else {
    padding = ints_json({pads[0], pads[1], pads[2], pads[3]});
    outpad = ints_json(output_padding);
    s = ints_json(strides);
    d = ints_json(dilations);
  }
  std::string y = c.emit("conv2d_transpose", {in, filt},
                         {{"strides", s}, {"dilations", d}, {"padding", padding}, {"output_padding", outpad}, {"layout", "NCHW"}});
  if (one_d) y = squeeze(c, y, {2});
  if (c.has(2)) y = c.emit("add", {y, per_channel(c, c.in(2), static_cast<int>(x.size()))});
  c.out(0, y);
}

// MaxPool's Indices: the flat (N, C, H, W row-major) index of each window's
// maximum, the first in the window's row-major order where several tie.
// storage_order 1: the H and W part of the index column-major (w * H + h).
std::string max_indices(NodeCtx& c, const std::string& y, const Window& w, bool column_major) {
  const Shape& x = c.shape(0);
  if (has_open_dim(x)) unsupported("MaxPool's Indices output with an open batch dimension");
  const Shape& ys = c.kiln_type(y).shape;
  int64_t n = x[0], ch = x[1], h = x[2], wd = x[3], oh = ys[2], ow = ys[3];
  // The input padded (with the lowest float, which never wins) to cover every window.
  int64_t rows = (oh - 1) * w.strides[0] + (w.kernel[0] - 1) * w.dilations[0] + 1;
  int64_t cols = (ow - 1) * w.strides[1] + (w.kernel[1] - 1) * w.dilations[1] + 1;
  int64_t bottom = std::max<int64_t>(0, rows - h - w.pads[0]), right = std::max<int64_t>(0, cols - wd - w.pads[1]);
  std::string xp = c.emit("pad", {c.in(0)}, {{"pads", ints_json({0, 0, w.pads[0], w.pads[1], 0, 0, bottom, right})},
                                             {"value", static_cast<double>(std::numeric_limits<float>::lowest())}});
  interp::Value base{DType::i64, {n, ch, 1, 1}, {}};
  for (int64_t i = 0; i < n * ch; ++i) base.data.push_back(static_cast<double>(i * h * wd));
  std::string idx, found;
  for (int64_t ky = 0; ky < w.kernel[0]; ++ky)
    for (int64_t kx = 0; kx < w.kernel[1]; ++kx) {
      int64_t r0 = ky * w.dilations[0], c0 = kx * w.dilations[1];
      std::string v = c.emit("slice", {xp}, {{"starts", {r0, c0}}, {"ends", {r0 + (oh - 1) * w.strides[0] + 1, c0 + (ow - 1) * w.strides[1] + 1}},
                                             {"axes", {2, 3}}, {"steps", ints_json({w.strides[0], w.strides[1]})}});
      interp::Value at{DType::i64, {1, 1, oh, ow}, {}};
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          int64_t row = oy * w.strides[0] + r0 - w.pads[0], col = ox * w.strides[1] + c0 - w.pads[1];
          at.data.push_back(static_cast<double>(column_major ? col * h + row : row * wd + col));
        }
      std::string hit = c.emit("compare", {v, y}, {{"kind", "eq"}});
      std::string here = c.emit("broadcast", {c.constant(at)}, {{"shape", ints_json({n, ch, oh, ow})}});
      if (idx.empty()) {
        idx = here;
        found = hit;
        continue;
      }
      std::string take = c.emit("logical_and", {hit, c.emit("logical_not", {found})});
      idx = c.emit("select", {take, here, idx});
      found = c.emit("logical_or", {found, hit});
    }
  return c.emit("add", {idx, c.constant(base)});
}

void pool(NodeCtx& c, bool max) {
  const char* op = max ? "MaxPool" : "AveragePool";
  check_spatial(c, op);
  if (c.rank(0) == 5) return pool3d(c, max);
  const Shape& x = c.shape(0);
  bool one_d = x.size() == 3;
  Window w = window_of(c, Shape(x.begin() + 2, x.end()), {}, max);
  bool ceil_mode = c.attr_int("ceil_mode", 0) != 0;
  if (c.wants(1) && (one_d || !max)) unsupported("MaxPool's Indices output of a 1-D pool");
  json a = {{"pool", ints_json(one_d ? std::vector<int64_t>{w.kernel[0]} : w.kernel)},
            {"strides", ints_json(one_d ? std::vector<int64_t>{w.strides[0]} : w.strides)},
            {"ceil_mode", ceil_mode}};
  if (max) {
    if (c.attr_int("storage_order", 0) != 0 && !c.wants(1)) unsupported("storage_order 1 without the Indices output");
    a["dilations"] = ints_json(one_d ? std::vector<int64_t>{w.dilations[0]} : w.dilations);
  } else {
    a["count_include_pad"] = c.attr_int("count_include_pad", 0) != 0;
  }
  if (one_d) {
    a["padding"] = ints_json({w.pads[0], w.pads[1]});
    a["layout"] = "NCW";
    c.emit_out(0, max ? "maxpool1d" : "avgpool1d", {c.in(0)}, a);
  } else {
    a["padding"] = pads2d(w);
    a["layout"] = "NCHW";
    std::string y = c.emit_out(0, max ? "maxpool2d" : "avgpool2d", {c.in(0)}, a);
    if (max && c.wants(1)) c.out(1, max_indices(c, y, w, c.attr_int("storage_order", 0) != 0));
  }
}

void global_pool(NodeCtx& c, const char* reduce) {
  std::vector<int64_t> axes;
  for (int a = 2; a < c.rank(0); ++a) axes.push_back(a);
  c.emit_out(0, reduce, {c.in(0)}, {{"axes", ints_json(axes)}, {"keepdims", true}});
}

// softmax, log_softmax or hardmax over `axis`; before opset 13 the input is
// seen as 2-D ([prod(:axis), prod(axis:)]) and normalized over its rows.
void softmax_like(NodeCtx& c, const char* kind) {
  int64_t rank = c.rank(0);
  int64_t axis = NodeCtx::axis(c.attr_int("axis", c.opset() < 13 ? 1 : -1), rank);
  std::string x = c.in(0);
  Shape s = c.shape(0);
  auto apply = [&](const std::string& v, int64_t ax) -> std::string {
    if (std::string(kind) != "hardmax") return c.emit(kind, {v}, {{"axis", ax}});
    int64_t depth = c.kiln_type(v).shape[static_cast<size_t>(ax)];
    std::string idx = c.emit("argmax", {v}, {{"axis", ax}});
    return c.emit("one_hot", {idx}, {{"depth", depth}, {"axis", ax}, {"dtype", dtype_name(c.dtype(0))}});
  };
  if (c.opset() >= 13 || axis == rank - 1) return c.out(0, apply(x, axis));
  if (has_open_dim(s)) unsupported("opset < 13 softmax over several axes of an input with an open batch dimension");
  int64_t rows = 1, cols = 1;
  for (int64_t i = 0; i < rank; ++i) (i < axis ? rows : cols) *= s[static_cast<size_t>(i)];
  std::string flat = c.emit("reshape", {x}, {{"shape", ints_json({rows, cols})}});
  c.emit_out(0, "reshape", {apply(flat, 1)}, {{"shape", ints_json(s)}});
}

// -input[n, target[n, d...], d...] weighted and reduced as ONNX's
// NegativeLogLikelihoodLoss defines it.
std::string nll(NodeCtx& c, const std::string& input, const std::string& target, const std::string& weight) {
  std::string reduction = c.attr_string("reduction", "mean");
  bool has_ignore = c.has_attr("ignore_index");
  int64_t ignore = c.attr_int("ignore_index", -100);
  DType ft = c.kiln_type(input).dtype, it = c.kiln_type(target).dtype;
  std::string t = target, valid;
  if (has_ignore) {
    valid = c.emit("compare", {t, c.scalar(static_cast<double>(ignore), it)}, {{"kind", "ne"}});
    t = c.emit("select", {valid, t, c.scalar(0, it)});
  }
  std::string picked = c.emit("gather_elements", {input, unsqueeze(c, t, {1})}, {{"axis", 1}});
  std::string loss = c.emit("neg", {squeeze(c, picked, {1})});
  std::string w;
  if (!weight.empty()) w = c.emit("gather", {weight, t}, {{"axis", 0}});
  if (has_ignore) w = c.emit("select", {valid, w.empty() ? c.scalar(1, ft) : w, c.scalar(0, ft)});
  if (!w.empty()) loss = c.emit("mul", {loss, w});
  if (reduction == "none") return loss;
  if (reduction == "sum") return c.emit("reduce_sum", {loss});
  if (reduction != "mean") invalid("reduction '" + reduction + "'");
  if (w.empty()) return c.emit("reduce_mean", {loss});
  if (w.size() && c.kiln_type(w).shape != c.kiln_type(loss).shape) w = c.emit("broadcast", {w}, {{"shape", ints_json(c.kiln_type(loss).shape)}});
  return c.emit("div", {c.emit("reduce_sum", {loss}), c.emit("reduce_sum", {w})});
}

}  // namespace

void register_nn(ConverterTable& t) {
  t["Conv"] = conv;
  t["ConvTranspose"] = conv_transpose;
  t["MaxPool"] = [](NodeCtx& c) { pool(c, true); };
  t["AveragePool"] = [](NodeCtx& c) { pool(c, false); };
  t["GlobalAveragePool"] = [](NodeCtx& c) { global_pool(c, "reduce_mean"); };
  t["GlobalMaxPool"] = [](NodeCtx& c) { global_pool(c, "reduce_max"); };
  t["Softmax"] = [](NodeCtx& c) { softmax_like(c, "softmax"); };
  t["LogSoftmax"] = [](NodeCtx& c) { softmax_like(c, "log_softmax"); };
  t["Hardmax"] = [](NodeCtx& c) { softmax_like(c, "hardmax"); };

  t["BatchNormalization"] = [](NodeCtx& c) {
    double eps = c.attr_float("epsilon", 1e-5);
    double momentum = c.attr_float("momentum", 0.9);
    c.attr_int("spatial", 1);
    c.attr_int("is_test", 0);
    c.attr_ints("consumed_inputs");
    bool training = c.attr_int("training_mode", 0) != 0;
    if (!training && c.opset() < 14 && c.outputs() > 1 && c.opset() >= 9) training = true;  // opset 9-13: extra outputs mean training
    int rank = c.rank(0);
    std::string x = c.in(0);
    DType dt = c.dtype(0);
    if (!training && c.outputs() == 1 && c.is_param(1) && c.is_param(2) && c.is_param(3) && c.is_param(4)) {
      // A model's own batch norm: kiln's op, so kiln train normalizes by the
      // batch and updates the running statistics (state, not trained).
      // ONNX's momentum keeps the running value (0.9); kiln's, PyTorch's, moves it (0.1).
      c.mark_state(3);
      c.mark_state(4);
      return void(c.emit_out(0, "batch_norm", {x, c.in(1), c.in(2), c.in(3), c.in(4)},
                             {{"axis", 1}, {"epsilon", eps}, {"momentum", 1 - momentum}}));
    }
    std::string mean = c.in(3), var = c.in(4);
    if (training) {
      // Batch statistics (the population variance); the running ones move
      // toward them: running * momentum + batch * (1 - momentum).
      std::vector<int64_t> axes = {0};
      for (int a = 2; a < rank; ++a) axes.push_back(a);
      std::string bm = c.emit("reduce_mean", {x}, {{"axes", ints_json(axes)}});
      std::string centered = c.emit("sub", {x, per_channel(c, bm, rank)});
      std::string bv = c.emit("reduce_mean", {c.emit("square", {centered})}, {{"axes", ints_json(axes)}});
      auto blend = [&](const std::string& running, const std::string& batch) {
        return c.emit("add", {c.emit("mul", {running, c.scalar(momentum, dt)}), c.emit("mul", {batch, c.scalar(1 - momentum, dt)})});
      };
      if (c.wants(1)) c.out(1, blend(mean, bm));
      if (c.wants(2)) c.out(2, blend(var, bv));
      mean = bm;
      var = bv;
    } else if (c.outputs() > 1) {
      unsupported("BatchNormalization's saved mean and variance outputs (opset < 9)");
    }
    // y = (x - mean) / sqrt(var + eps) * scale + bias, per channel (axis 1).
    std::string inv = c.emit("rsqrt", {c.emit("add", {var, c.scalar(eps, dt)})});
    std::string scale = c.emit("mul", {c.in(1), inv});
    std::string shift = c.emit("sub", {c.in(2), c.emit("mul", {mean, scale})});
    c.emit_out(0, "add", {c.emit("mul", {x, per_channel(c, scale, rank)}), per_channel(c, shift, rank)});
  };
  t["InstanceNormalization"] = [](NodeCtx& c) {
    c.emit_out(0, "instance_norm", {c.in(0), c.in(1), c.in(2)}, {{"axis", 1}, {"epsilon", c.attr_float("epsilon", 1e-5)}});
  };
  t["LayerNormalization"] = [](NodeCtx& c) {
    int64_t rank = c.rank(0);
    int64_t axis = NodeCtx::axis(c.attr_int("axis", -1), rank);
    double eps = c.attr_float("epsilon", 1e-5);
    c.attr_int("stash_type", 1);
    std::vector<int64_t> axes;
    for (int64_t a = axis; a < rank; ++a) axes.push_back(a);
    std::string x = c.in(0);
    DType dt = c.dtype(0);
    const Shape shape = c.type(0).shape;
    const bool static_rows = std::none_of(shape.begin() + axis, shape.end(), [](int64_t d) { return d == kOpenDim; });
    if (static_rows && !c.wants(1) && !c.wants(2)) {
      // The row kernel (kiln's layer_norm): statistics and normalization in one pass a row.
      std::string y = c.emit("mul", {c.emit("normalize", {x}, {{"trailing_axes", rank - axis}, {"epsilon", eps}}), c.in(1)});
      c.out(0, c.has(2) ? c.emit("add", {y, c.in(2)}) : y);
      return;
    }
    std::string mean = c.emit("reduce_mean", {x}, {{"axes", ints_json(axes)}, {"keepdims", true}});
    std::string centered = c.emit("sub", {x, mean});
    std::string var = c.emit("reduce_mean", {c.emit("square", {centered})}, {{"axes", ints_json(axes)}, {"keepdims", true}});
    std::string inv = c.emit("rsqrt", {c.emit("add", {var, c.scalar(eps, dt)})});
    std::string y = c.emit("mul", {c.emit("mul", {centered, inv}), c.in(1)});
    if (c.has(2)) y = c.emit("add", {y, c.in(2)});
    c.out(0, y);
    if (c.wants(1)) c.out(1, mean);
    if (c.wants(2)) c.out(2, inv);
  };
  t["MeanVarianceNormalization"] = [](NodeCtx& c) {
    std::vector<int64_t> axes = c.attr_ints("axes", {0, 2, 3});
    for (auto& a : axes) a = NodeCtx::axis(a, c.rank(0));
    std::string x = c.in(0);
    json ra = {{"axes", ints_json(axes)}, {"keepdims", true}};
    std::string centered = c.emit("sub", {x, c.emit("reduce_mean", {x}, ra)});
    std::string sd = c.emit("sqrt", {c.emit("reduce_mean", {c.emit("square", {centered})}, ra)});
    c.emit_out(0, "div", {centered, c.emit("add", {sd, c.scalar(1e-9, c.dtype(0))})});
  };
  t["LRN"] = [](NodeCtx& c) {
    int64_t size = c.attr_int("size");
    if (c.rank(0) < 3 || size < 1 || size > c.shape(0)[1] * 2 + 1) invalid("LRN needs [N, C, ...] and a size from 1 to 2C+1");
    double alpha = c.attr_float("alpha", 1e-4), beta = c.attr_float("beta", 0.75), bias = c.attr_float("bias", 1.0);
    int rank = c.rank(0);
    const Shape& s = c.shape(0);
    std::string x = c.in(0);
    DType dt = c.dtype(0);
    // The sum of squares over a window of `size` channels around each one.
    std::vector<int64_t> pads(static_cast<size_t>(2 * rank), 0);
    pads[1] = (size - 1) / 2;
    pads[static_cast<size_t>(rank) + 1] = size - 1 - (size - 1) / 2;
    std::string sq = c.emit("pad", {c.emit("square", {x})}, {{"pads", ints_json(pads)}});
    std::string sum;
    for (int64_t k = 0; k < size; ++k) {
      std::string part = c.emit("slice", {sq}, {{"starts", {k}}, {"ends", {k + s[1]}}, {"axes", {1}}});
      sum = sum.empty() ? part : c.emit("add", {sum, part});
    }
    std::string denom = c.emit("pow", {c.emit("add", {c.scalar(bias, dt), c.emit("mul", {sum, c.scalar(alpha / size, dt)})}),
                                       c.scalar(beta, dt)});
    c.emit_out(0, "div", {x, denom});
  };
  t["Gemm"] = [](NodeCtx& c) {
    double alpha = c.attr_float("alpha", 1.0), beta = c.attr_float("beta", 1.0);
    bool ta = c.attr_int("transA", 0) != 0, tb = c.attr_int("transB", 0) != 0;
    c.attr_int("broadcast", 0);
    DType dt = c.dtype(0);
    std::string y = c.emit("matmul", {c.in(0), c.in(1)}, {{"transpose_a", ta}, {"transpose_b", tb}});
    if (alpha != 1.0) y = c.emit("mul", {y, c.scalar(alpha, dt)});
    if (c.has(2) && beta != 0.0) {
      std::string bias = c.in(2);
      if (beta != 1.0) bias = c.emit("mul", {bias, c.scalar(beta, dt)});
      y = c.emit("add", {y, bias});
    }
    c.out(0, y);
  };
  t["MatMul"] = [](NodeCtx& c) {
    std::string a = c.in(0), b = c.in(1);
    bool va = c.rank(0) == 1, vb = c.rank(1) == 1;
    if (va) a = unsqueeze(c, a, {0});
    if (vb) b = unsqueeze(c, b, {1});
    std::string y = c.emit("matmul", {a, b});
    int out_rank = c.kiln_type(y).rank();
    if (va && vb) y = squeeze(c, y, {out_rank - 2, out_rank - 1});
    else if (va) y = squeeze(c, y, {out_rank - 2});
    else if (vb) y = squeeze(c, y, {out_rank - 1});
    c.out(0, y);
  };
  t["NegativeLogLikelihoodLoss"] = [](NodeCtx& c) {
    c.out(0, nll(c, c.in(0), c.in(1), c.has(2) ? c.in(2) : ""));
  };
  t["SoftmaxCrossEntropyLoss"] = [](NodeCtx& c) {
    std::string log_prob = c.emit("log_softmax", {c.in(0)}, {{"axis", 1}});
    c.out(0, nll(c, log_prob, c.in(1), c.has(2) ? c.in(2) : ""));
    if (c.wants(1)) c.out(1, log_prob);
  };
}

}  // namespace kiln::onnx
