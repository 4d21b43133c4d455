// ONNX Resize and Upsample, and GridSample. Resize's output sizes are
// static, so each resized axis is a few gathers at indices computed now,
// weighted by constants and summed: nearest is one tap, linear two, cubic
// four; axes are resized one after the other (the ONNX definition is
// separable). GridSample reads where its grid says, at run time: the same
// taps with indices and weights computed by kiln ops from the grid.
#include <algorithm>
#include <cmath>

#include "compiler/frontend/onnx/convert.h"

namespace kiln::onnx {

using json = nlohmann::json;

namespace {

struct ResizeSpec {
  std::string mode = "nearest";                 // nearest | linear | cubic
  std::string transform = "half_pixel";         // coordinate_transformation_mode
  std::string nearest = "round_prefer_floor";
  double cubic_a = -0.75;
  bool exclude_outside = false;
  double extrapolation = 0;
  std::vector<double> roi;                      // tf_crop_and_resize: [starts..., ends...]
};

// Where output position o of an axis reads in the input, as ONNX defines it.
// `out` is the resized length as ONNX's formulas read it: in x scale (not
// rounded) where scales were given.
double source_coordinate(const ResizeSpec& s, int64_t o, int64_t in, double out, double scale, size_t axis, size_t rank) {
  double x = static_cast<double>(o);
  const std::string& t = s.transform;
  if (t == "half_pixel") return (x + 0.5) / scale - 0.5;
  if (t == "pytorch_half_pixel") return out > 1 ? (x + 0.5) / scale - 0.5 : 0;
  if (t == "align_corners") return out == 1 ? 0 : x * static_cast<double>(in - 1) / (out - 1);
  if (t == "asymmetric") return x / scale;
  if (t == "tf_half_pixel_for_nn") return (x + 0.5) / scale;
  if (t == "tf_crop_and_resize") {
    double start = s.roi[axis], end = s.roi[axis + rank];
    return out > 1 ? start * static_cast<double>(in - 1) + x * (end - start) * static_cast<double>(in - 1) / (out - 1)
                   : 0.5 * (start + end) * static_cast<double>(in - 1);
  }
  unsupported("coordinate_transformation_mode '" + t + "'");
}

struct Taps {
  std::vector<std::vector<int64_t>> index;  // [tap][output position]
  std::vector<std::vector<double>> weight;
  std::vector<bool> outside;                // tf_crop_and_resize: the extrapolation value goes there
};

std::vector<double> cubic_coeffs(double r, double a) {
  return {((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a, ((a + 2) * r - (a + 3)) * r * r + 1,
          ((a + 2) * (1 - r) - (a + 3)) * (1 - r) * (1 - r) + 1,
          ((a * (2 - r) - 5 * a) * (2 - r) + 8 * a) * (2 - r) - 4 * a};
}

Taps taps_for_axis(const ResizeSpec& s, int64_t in, int64_t out, double out_len, double scale, size_t axis, size_t rank) {
  int ntaps = s.mode == "nearest" ? 1 : s.mode == "linear" ? 2 : 4;
  Taps t;
  t.index.assign(static_cast<size_t>(ntaps), {});
  t.weight.assign(static_cast<size_t>(ntaps), {});
  auto clamp = [in](int64_t i) { return std::clamp<int64_t>(i, 0, in - 1); };
  for (int64_t o = 0; o < out; ++o) {
    double x = source_coordinate(s, o, in, out_len, scale, axis, rank);
    t.outside.push_back(s.transform == "tf_crop_and_resize" && (x < 0 || x > static_cast<double>(in - 1)));
    if (s.mode == "nearest") {
      double f = std::floor(x);
      int64_t i;
      if (s.nearest == "floor") i = static_cast<int64_t>(f);
      else if (s.nearest == "ceil") i = static_cast<int64_t>(std::ceil(x));
      else if (x - f == 0.5) i = static_cast<int64_t>(s.nearest == "round_prefer_ceil" ? f + 1 : f);
      else i = static_cast<int64_t>(std::round(x));
      t.index[0].push_back(clamp(i));
      t.weight[0].push_back(1);
      continue;
    }
    double f = std::floor(x), r = x - f;
    int64_t base = static_cast<int64_t>(f);
    std::vector<double> w = ntaps == 2 ? std::vector<double>{1 - r, r} : cubic_coeffs(r, s.cubic_a);
    int64_t first = ntaps == 2 ? base : base - 1;
    if (s.exclude_outside) {
      double sum = 0;
      for (int k = 0; k < ntaps; ++k) {
        int64_t i = first + k;
        if (i < 0 || i >= in) w[static_cast<size_t>(k)] = 0;
        sum += w[static_cast<size_t>(k)];
      }
      if (sum != 0)
        for (double& v : w) v /= sum;
    }
    for (int k = 0; k < ntaps; ++k) {
      t.index[static_cast<size_t>(k)].push_back(clamp(first + k));
      t.weight[static_cast<size_t>(k)].push_back(w[static_cast<size_t>(k)]);
    }
  }
  return t;
}

std::string resize_axis(NodeCtx& c, const std::string& x, const ResizeSpec& s, size_t axis, int64_t out, double out_len,
                        double scale) {
  TensorType ty = c.kiln_type(x);
  size_t rank = ty.shape.size();
  int64_t in = ty.shape[axis];
  Taps t = taps_for_axis(s, in, out, out_len, scale, axis, rank);
  bool identity = t.index.size() == 1 && out == in;
  for (int64_t o = 0; identity && o < out; ++o) identity = t.index[0][static_cast<size_t>(o)] == o && !t.outside[static_cast<size_t>(o)];
  if (identity) return x;
  Shape wshape(rank - axis, 1);  // [out, 1, ...]: broadcasts along the axis
  wshape[0] = out;
  std::string sum;
  for (size_t k = 0; k < t.index.size(); ++k) {
    interp::Value idx{DType::i32, {out}, {}};
    for (int64_t i : t.index[k]) idx.data.push_back(static_cast<double>(i));
    std::string y = c.emit("gather", {x, c.constant(idx)}, {{"axis", axis}});
    if (s.mode != "nearest") {
      interp::Value w{ty.dtype, wshape, std::vector<double>(t.weight[k].begin(), t.weight[k].end())};
      y = c.emit("mul", {y, c.constant(w)});
    }
    sum = sum.empty() ? y : c.emit("add", {sum, y});
  }
  if (std::find(t.outside.begin(), t.outside.end(), true) != t.outside.end()) {
    interp::Value mask{DType::boolean, wshape, {}};
    for (bool b : t.outside) mask.data.push_back(b ? 1 : 0);
    sum = c.emit("select", {c.constant(mask), c.scalar(s.extrapolation, ty.dtype), sum});
  }
  return sum;
}

void resize(NodeCtx& c, ResizeSpec s, const std::vector<double>& scales_in, const std::vector<int64_t>& sizes_in) {
  Shape in = c.shape(0);
  size_t rank = in.size();
  std::vector<double> scales = scales_in;
  std::vector<int64_t> sizes = sizes_in;
  if (!sizes.empty()) {
    if (sizes.size() != rank) invalid("sizes needs one entry per axis");
    scales.clear();
    for (size_t a = 0; a < rank; ++a) scales.push_back(static_cast<double>(sizes[a]) / static_cast<double>(in[a]));
  } else {
    if (scales.size() != rank) invalid("scales needs one entry per axis");
    for (size_t a = 0; a < rank; ++a) sizes.push_back(static_cast<int64_t>(std::floor(static_cast<double>(in[a]) * scales[a])));
  }
  if (s.mode != "nearest" && s.mode != "linear" && s.mode != "cubic") unsupported("mode '" + s.mode + "'");
  if (s.transform == "tf_crop_and_resize" && s.roi.size() != 2 * rank) invalid("roi needs 2 x rank entries");
  std::string x = c.in(0);
  for (size_t a = 0; a < rank; ++a) {
    if (in[a] == kOpenDim) {
      if (scales[a] != 1) unsupported("resizing the open batch dimension");
      continue;
    }
    double out_len = sizes_in.empty() ? static_cast<double>(in[a]) * scales[a] : static_cast<double>(sizes[a]);
    x = resize_axis(c, x, s, a, sizes[a], out_len, scales[a]);
  }
  if (x == c.in(0)) x = c.emit("add", {x, c.scalar(0, c.dtype(0))});
  c.out(0, x);
}

std::vector<double> doubles(const interp::Value& v) { return v.data; }

// GridSample's taps: x along an axis of `size` from grid coordinates g in [-1, 1].
struct GridAxis {
  NodeCtx& c;
  DType dt;
  int64_t size;
  bool align_corners;
  std::string padding;  // zeros | border | reflection
  std::string k(double v) { return c.scalar(v, dt); }
  std::string unnormalize(const std::string& g) {
    // align_corners: -1 and 1 are the centers of the corner pixels; else their outer edges.
    if (align_corners) return c.emit("mul", {c.emit("add", {g, k(1)}), k(0.5 * static_cast<double>(size - 1))});
    return c.emit("mul", {c.emit("sub", {c.emit("mul", {c.emit("add", {g, k(1)}), k(static_cast<double>(size))}), k(1)}), k(0.5)});
  }
  std::string clamp(const std::string& x) { return c.emit("minimum", {c.emit("maximum", {x, k(0)}), k(static_cast<double>(size - 1))}); }
  // Coordinates reflected into [lo, hi] (the pixel centers, or their edges), then clamped.
  std::string reflect(const std::string& x) {
    double lo = align_corners ? 0 : -0.5, hi = align_corners ? static_cast<double>(size - 1) : static_cast<double>(size) - 0.5;
    double span = hi - lo;
    if (span <= 0) return c.emit("mul", {x, k(0)});
    std::string d = c.emit("mod", {c.emit("abs", {c.emit("sub", {x, k(lo)})}), k(2 * span)});
    std::string back = c.emit("select", {c.emit("compare", {d, k(span)}, {{"kind", "gt"}}), c.emit("sub", {k(2 * span), d}), d});
    return clamp(c.emit("add", {back, k(lo)}));
  }
  std::string pad_coordinate(const std::string& x) {
    if (padding == "border") return clamp(x);
    if (padding == "reflection") return reflect(x);
    return x;
  }
  std::string inside(const std::string& i) {
    return c.emit("logical_and", {c.emit("compare", {i, k(0)}, {{"kind", "ge"}}),
                                  c.emit("compare", {i, k(static_cast<double>(size - 1))}, {{"kind", "le"}})});
  }
};

void grid_sample(NodeCtx& c) {
  std::string mode = c.attr_string("mode", "bilinear"), padding = c.attr_string("padding_mode", "zeros");
  bool align = c.attr_int("align_corners", 0) != 0;
  if (mode != "bilinear" && mode != "nearest" && mode != "bicubic") unsupported("mode '" + mode + "'");
  if (padding != "zeros" && padding != "border" && padding != "reflection") unsupported("padding_mode '" + padding + "'");
  Shape xs = c.shape(0), gs = c.shape(1);
  if (xs.size() != 4 || gs.size() != 4 || gs[3] != 2 || has_open_dim(xs) || has_open_dim(gs) || gs[0] != xs[0])
    unsupported("GridSample over anything but a static [N, C, H, W] input and [N, H_out, W_out, 2] grid");
  DType dt = c.dtype(0);
  int64_t n = xs[0], ch = xs[1], h = xs[2], w = xs[3], points = gs[1] * gs[2];
  std::string grid = c.in(1);
  auto coord = [&](int64_t k) {
    return c.emit("squeeze", {c.emit("slice", {grid}, {{"starts", {k}}, {"ends", {k + 1}}, {"axes", {3}}})}, {{"axes", {3}}});
  };
  GridAxis ax{c, dt, w, align, padding}, ay{c, dt, h, align, padding};
  std::string x = ax.pad_coordinate(ax.unnormalize(coord(0))), y = ay.pad_coordinate(ay.unnormalize(coord(1)));
  std::string img = c.emit("reshape", {c.in(0)}, {{"shape", ints_json({n, ch, h * w})}});
  // Taps along one axis: (coordinate, weight) pairs.
  using Taps = std::vector<std::pair<std::string, std::string>>;
  auto taps = [&](GridAxis& a, const std::string& v) -> Taps {
    if (mode == "nearest") return {{c.emit("round", {v}), ""}};  // ties to even, as ONNX's reference
    std::string f = c.emit("floor", {v}), r = c.emit("sub", {v, f});
    if (mode == "bilinear") return {{f, c.emit("sub", {a.k(1), r})}, {c.emit("add", {f, a.k(1)}), r}};
    // Cubic convolution (A = -0.75), taps floor-1 .. floor+2.
    const double A = -0.75;
    auto poly = [&](const std::string& t, bool near) {  // |t| <= 1: ((A+2)t - (A+3))t^2 + 1; 1 < |t| < 2: ((At - 5A)t + 8A)t - 4A
      if (near) return c.emit("add", {c.emit("mul", {c.emit("sub", {c.emit("mul", {t, a.k(A + 2)}), a.k(A + 3)}), c.emit("square", {t})}), a.k(1)});
      return c.emit("sub", {c.emit("mul", {c.emit("add", {c.emit("mul", {c.emit("sub", {c.emit("mul", {t, a.k(A)}), a.k(5 * A)}), t}), a.k(8 * A)}), t}), a.k(4 * A)});
    };
    Taps out;
    for (int d = -1; d <= 2; ++d) {
      std::string t = c.emit("abs", {c.emit("sub", {r, a.k(d)})});
      out.push_back({c.emit("add", {f, a.k(d)}), poly(t, d == 0 || d == 1)});
    }
    return out;
  };
  Taps tx = taps(ax, x), ty = taps(ay, y);
  std::string sum;
  for (auto& [yi, wy] : ty)
    for (auto& [xi, wx] : tx) {
      // Taps outside the image read zeros (padding zeros) or the padded coordinate's pixel.
      std::string px = xi, py = yi;
      std::string weight = wx.empty() ? "" : c.emit("mul", {wx, wy});
      if (padding == "zeros") {
        std::string in = c.emit("logical_and", {ax.inside(px), ay.inside(py)});
        weight = c.emit("select", {in, weight.empty() ? ax.k(1) : weight, ax.k(0)});
      } else if (mode == "bicubic") {
        px = ax.pad_coordinate(px), py = ay.pad_coordinate(py);
      }
      std::string lin = c.emit("add", {c.emit("mul", {ay.clamp(py), ax.k(static_cast<double>(w))}), ax.clamp(px)});
      std::string idx = c.emit("reshape", {c.emit("cast", {lin}, {{"dtype", "i32"}})}, {{"shape", ints_json({n, 1, points})}});
      idx = c.emit("broadcast", {idx}, {{"shape", ints_json({n, ch, points})}});
      std::string v = c.emit("gather_elements", {img, idx}, {{"axis", 2}});
      if (!weight.empty()) v = c.emit("mul", {v, c.emit("reshape", {weight}, {{"shape", ints_json({n, 1, points})}})});
      sum = sum.empty() ? v : c.emit("add", {sum, v});
    }
  c.emit_out(0, "reshape", {sum}, {{"shape", ints_json({n, ch, gs[1], gs[2]})}});
}

}  // namespace

void register_resize(ConverterTable& t) {
  t["GridSample"] = grid_sample;
  t["Resize"] = [](NodeCtx& c) {
    ResizeSpec s;
    s.mode = c.attr_string("mode", "nearest");
    if (c.opset() < 11) {
      // Opset 10: x / scale, nearest rounding down.
      s.transform = "asymmetric";
      s.nearest = "floor";
      return resize(c, s, doubles(c.need_known(1, "scales")), {});
    }
    s.transform = c.attr_string("coordinate_transformation_mode", "half_pixel");
    s.nearest = c.attr_string("nearest_mode", "round_prefer_floor");
    s.cubic_a = c.attr_float("cubic_coeff_a", -0.75);
    s.exclude_outside = c.attr_int("exclude_outside", 0) != 0;
    s.extrapolation = c.attr_float("extrapolation_value", 0.0);
    if (s.transform == "tf_crop_and_resize") s.roi = doubles(c.need_known(1, "roi"));
    std::vector<double> scales;
    std::vector<int64_t> sizes;
    if (c.has(3) && numel(c.shape(3)) > 0) sizes = c.need_ints(3, "sizes");
    else if (c.has(2)) scales = doubles(c.need_known(2, "scales"));
    else invalid("Resize needs scales or sizes");
    if (!sizes.empty() && c.has(2) && numel(c.shape(2)) > 0) invalid("Resize takes scales or sizes, not both");
    resize(c, s, scales, sizes);
  };
  t["Upsample"] = [](NodeCtx& c) {
    ResizeSpec s;
    s.mode = c.attr_string("mode", "nearest");
    s.transform = "asymmetric";
    s.nearest = "floor";
    if (s.mode == "bilinear") s.mode = "linear";
    std::vector<double> scales = c.opset() < 9 ? std::vector<double>(c.attr_floats("scales")) : doubles(c.need_known(1, "scales"));
    resize(c, s, scales, {});
  };
}

}  // namespace kiln::onnx
