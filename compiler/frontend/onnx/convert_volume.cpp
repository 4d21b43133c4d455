// 3-D convolution and pooling over [N, C, D, H, W] from kiln's 2-D ops: for
// each depth tap kd, the depth slices it reads (od * stride + kd * dilation in
// the depth-padded input) are gathered, folded into the batch and run through
// the 2-D op over H and W; the taps' results are summed (conv, average) or
// maxed. The work is the 3-D op's own, without an im2col copy of the volume.
#include <cmath>
#include <limits>

#include "compiler/frontend/onnx/convert_window.h"

namespace kiln::onnx {

using json = nlohmann::json;

namespace {

struct Depth {
  int64_t in = 0, out = 0, padded = 0;  // sizes: input, output, input with its padding (and ceil overhang)
  int64_t before = 0;                   // padding before
};

Depth depth_geometry(const Shape& x, const Window& w, bool ceil_mode) {
  Depth d;
  d.in = x[2];
  d.before = w.pads[0];
  int64_t span = (w.kernel[0] - 1) * w.dilations[0] + 1;
  int64_t room = d.in + w.pads[0] + w.pads[3] - span;
  if (room < 0) invalid("the window is larger than the padded depth");
  d.out = (ceil_mode ? (room + w.strides[0] - 1) / w.strides[0] : room / w.strides[0]) + 1;
  d.padded = std::max(d.in + w.pads[0] + w.pads[3], (d.out - 1) * w.strides[0] + span);
  return d;
}

// The input padded along depth with `fill`, so every tap index is in range.
std::string pad_depth(NodeCtx& c, const std::string& x, const Depth& d, double fill) {
  int64_t after = d.padded - d.in - d.before;
  if (d.before == 0 && after == 0) return x;
  return c.emit("pad", {x}, {{"pads", ints_json({0, 0, d.before, 0, 0, 0, 0, after, 0, 0})}, {"value", fill}});
}

// The depth slices tap kd reads, as a batch of 2-D images [N*OD, C, H, W].
std::string tap_slices(NodeCtx& c, const std::string& xp, const Shape& x, const Window& w, const Depth& d, int64_t kd) {
  interp::Value idx{DType::i32, {d.out}, {}};
  for (int64_t od = 0; od < d.out; ++od) idx.data.push_back(static_cast<double>(od * w.strides[0] + kd * w.dilations[0]));
  std::string s = c.emit("gather", {xp, c.constant(idx)}, {{"axis", 2}});           // [N, C, OD, H, W]
  s = c.emit("transpose", {s}, {{"perm", {0, 2, 1, 3, 4}}});                         // [N, OD, C, H, W]
  int64_t batch = x[0] == kOpenDim ? -1 : x[0] * d.out;
  return c.emit("reshape", {s}, {{"shape", ints_json({batch, x[1], x[3], x[4]})}});  // [N*OD, C, H, W]
}

// [N*OD, F, OH, OW] back to [N, F, OD, OH, OW].
std::string unfold_depth(NodeCtx& c, const std::string& y, const Shape& x, const Depth& d) {
  Shape s = c.kiln_type(y).shape;
  std::string r = c.emit("reshape", {y}, {{"shape", ints_json({x[0] == kOpenDim ? -1 : x[0], d.out, s[1], s[2], s[3]})}});
  return c.emit("transpose", {r}, {{"perm", {0, 2, 1, 3, 4}}});
}

json hw(const std::vector<int64_t>& v) { return ints_json({v[1], v[2]}); }
json hw_pads(const Window& w) { return ints_json({w.pads[1], w.pads[2], w.pads[4], w.pads[5]}); }

}  // namespace

void conv3d(NodeCtx& c) {
  if (c.rank(1) != 5) invalid("the filter's rank must equal the input's");
  const Shape& x = c.shape(0);
  const Shape& ws = c.shape(1);
  Window w = window_of(c, Shape(x.begin() + 2, x.end()), Shape(ws.begin() + 2, ws.end()), true);
  int64_t groups = c.attr_int("group", 1);
  Depth d = depth_geometry(x, w, false);
  std::string xp = pad_depth(c, c.in(0), d, 0.0), filt = c.in(1), sum;
  for (int64_t kd = 0; kd < w.kernel[0]; ++kd) {
    std::string wk = c.emit("squeeze", {c.emit("slice", {filt}, {{"starts", {kd}}, {"ends", {kd + 1}}, {"axes", {2}}})},
                            {{"axes", {2}}});  // [F, C/groups, KH, KW]
    std::string y = c.emit("conv2d", {tap_slices(c, xp, x, w, d, kd), wk},
                           {{"strides", hw(w.strides)}, {"dilations", hw(w.dilations)}, {"padding", hw_pads(w)},
                            {"groups", groups}, {"layout", "NCHW"}});
    sum = sum.empty() ? y : c.emit("add", {sum, y});
  }
  std::string y = unfold_depth(c, sum, x, d);
  if (c.has(2)) y = c.emit("add", {y, per_channel(c, c.in(2), 5)});
  c.out(0, y);
}

void pool3d(NodeCtx& c, bool max) {
  const Shape& x = c.shape(0);
  Window w = window_of(c, Shape(x.begin() + 2, x.end()), {}, max);
  bool ceil_mode = c.attr_int("ceil_mode", 0) != 0;
  bool include_pad = !max && c.attr_int("count_include_pad", 0) != 0;
  if (max) c.expect_attr_int("storage_order", 0);
  if (c.wants(1)) unsupported("MaxPool's Indices output");
  Depth d = depth_geometry(x, w, ceil_mode);
  // Max: padding never wins; average: padding adds nothing to the sum.
  double fill = max ? static_cast<double>(std::numeric_limits<float>::lowest()) : 0.0;
  std::string xp = pad_depth(c, c.in(0), d, fill), acc;
  json a = {{"pool", hw(w.kernel)}, {"strides", hw(w.strides)}, {"padding", hw_pads(w)}, {"ceil_mode", ceil_mode}, {"layout", "NCHW"}};
  if (max) a["dilations"] = hw(w.dilations);
  else a["count_include_pad"] = include_pad;
  for (int64_t kd = 0; kd < w.kernel[0]; ++kd) {
    std::string y = c.emit(max ? "maxpool2d" : "avgpool2d", {tap_slices(c, xp, x, w, d, kd)}, a);
    acc = acc.empty() ? y : c.emit(max ? "maximum" : "add", {acc, y});
  }
  std::string y = unfold_depth(c, acc, x, d);
  if (!max) {
    // The 2-D averages summed over depth taps, divided by the taps counted:
    // those inside the input, or also those in its padding (count_include_pad).
    interp::Value count{c.dtype(0), {1, 1, d.out, 1, 1}, {}};
    for (int64_t od = 0; od < d.out; ++od) {
      int64_t n = 0;
      for (int64_t kd = 0; kd < w.kernel[0]; ++kd) {
        int64_t at = od * w.strides[0] + kd * w.dilations[0] - d.before;  // in input coordinates
        bool inside = at >= 0 && at < d.in;
        bool in_padding = at >= -d.before && at < d.in + w.pads[3];
        n += include_pad ? in_padding : inside;
      }
      count.data.push_back(static_cast<double>(std::max<int64_t>(n, 1)));
    }
    y = c.emit("div", {y, c.constant(count)});
  }
  c.out(0, y);
}

}  // namespace kiln::onnx
