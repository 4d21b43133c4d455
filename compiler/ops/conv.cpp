// conv2d (NHWC input, HWIO filter; strides, dilations, TF or explicit padding)
// and the two ops its gradient is made of: the input and filter gradients.
#include "compiler/ops/conv.h"

#include "compiler/ops/conv_lowering.h"

#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

ConvGeometry conv_geometry(int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                           const nlohmann::json& padding, int64_t dh, int64_t dw) {
  auto refuse = [](const std::string& why) {
    OpError e("attribute 'padding': " + why);
    e.attr_problems = {{"padding", e.what()}};
    throw e;
  };
  ConvGeometry g{};
  g.h = h, g.w = w, g.kh = kh, g.kw = kw, g.sh = sh, g.sw = sw, g.dh = dh, g.dw = dw;
  const int64_t eh = g.span_h(), ew = g.span_w();
  int64_t bottom = 0, right = 0;
  if (padding.is_string() && padding == "same") {
    g.oh = (h + sh - 1) / sh;
    g.ow = (w + sw - 1) / sw;
    int64_t pad_h = std::max<int64_t>(0, (g.oh - 1) * sh + eh - h);
    int64_t pad_w = std::max<int64_t>(0, (g.ow - 1) * sw + ew - w);
    g.pad_top = pad_h / 2;
    g.pad_left = pad_w / 2;
    g.pad_bottom = pad_h - g.pad_top, g.pad_right = pad_w - g.pad_left;
    return g;
  }
  if (padding.is_array()) {
    bool ok = padding.size() == 4;
    for (auto& p : padding) ok = ok && p.is_number_integer() && p.get<int64_t>() >= 0 && p.get<int64_t>() <= (1 << 20);
    if (!ok) refuse("an explicit padding is [top, left, bottom, right] of integers >= 0, got " + padding.dump());
    g.pad_top = padding[0], g.pad_left = padding[1], bottom = padding[2], right = padding[3];
    g.pad_bottom = bottom, g.pad_right = right;
  } else if (!(padding.is_string() && padding == "valid")) {
    refuse("expected \"valid\", \"same\" or [top, left, bottom, right], got " + padding.dump());
  }
  if (h + g.pad_top + bottom < eh || w + g.pad_left + right < ew)
    throw OpError("window " + std::to_string(eh) + "x" + std::to_string(ew) + " (dilated) is larger than the " +
                  std::to_string(h) + "x" + std::to_string(w) + " input with padding " + padding.dump());
  g.oh = (h + g.pad_top + bottom - eh) / sh + 1;
  g.ow = (w + g.pad_left + right - ew) / sw + 1;
  return g;
}

ConvGeometry conv_geometry_of(int64_t h, int64_t w, int64_t kh, int64_t kw, const Attrs& a,
                              const std::vector<int64_t>& default_strides) {
  auto pair = [&](const char* key, std::vector<int64_t> fallback) {
    auto v = a.contains(key) && !a.at(key).is_null() ? a.at(key).get<std::vector<int64_t>>() : fallback;
    if (v.size() != 2) {
      OpError e(std::string("attribute '") + key + "': expected [h, w], got " + a.at(key).dump());
      e.attr_problems = {{key, e.what()}};
      throw e;
    }
    return v;
  };
  auto s = pair("strides", default_strides), d = pair("dilations", {1, 1});
  ConvGeometry g = conv_geometry(h, w, kh, kw, s[0], s[1],
                                 a.contains("padding") ? a.at("padding") : nlohmann::json("valid"), d[0], d[1]);
  g.groups = a.value("groups", int64_t{1});
  return g;
}

AttrSpec layout_attr() {
  return {"layout", AttrKind::Enum, false, "NHWC",
          "NHWC, or NCHW with filters [F, C/groups, KH, KW] (as PyTorch and ONNX)", {"NHWC", "NCHW"}};
}

NodeId channels_first_as_last(GraphBuilder& b, const std::string& op, const std::vector<NodeId>& in, const Attrs& attrs,
                              const std::string& channels_last, bool has_filter) {
  const std::string layout = attrs.value("layout", channels_last);
  if (layout == channels_last) return kNoNode;
  const int rank = static_cast<int>(channels_last.size());  // one letter per axis: NWC, NHWC
  if (b.type(in[0]).rank() != rank)
    throw OpError(op + " with layout " + layout + " needs a rank-" + std::to_string(rank) + " x, got " + type_str(b.type(in[0])));
  // x: [N, C, spatial...] -> [N, spatial..., C] and back; filters [O, I, spatial...] -> [spatial..., I, O].
  std::vector<int64_t> to_last{0}, to_first{0, rank - 1}, filter;
  for (int i = 2; i < rank; ++i) to_last.push_back(i), filter.push_back(i);
  to_last.push_back(1);
  for (int i = 1; i < rank - 1; ++i) to_first.push_back(i);
  filter.push_back(1), filter.push_back(0);
  Attrs a = attrs;
  a["layout"] = channels_last;
  std::vector<NodeId> moved{b.add("transpose", {in[0]}, {{"perm", to_last}})};
  if (has_filter) moved.push_back(b.add("transpose", {in[1]}, {{"perm", filter}}));
  return b.add("transpose", {b.add(op, moved, a)}, {{"perm", to_first}});
}

std::vector<AttrSpec> window_attrs(bool dilations) {
  std::vector<AttrSpec> a = {
      {"padding", AttrKind::Json, false, "valid", "\"valid\", \"same\" (TF) or [top, left, bottom, right]"}};
  if (dilations) a.push_back({"dilations", AttrKind::IntList, false, nlohmann::json::array({1, 1}), "[dh, dw]: taps this far apart", {}, 1, 1024});
  return a;
}

static std::vector<AttrSpec> conv_attrs() {
  std::vector<AttrSpec> a = {{"strides", AttrKind::IntList, false, nlohmann::json::array({1, 1}), "[sh, sw]", {}, 1, 1024}};
  for (auto& w : window_attrs(true)) a.push_back(w);
  a.push_back({"groups", AttrKind::Int, false, 1, "channel groups: filter [KH,KW,C/groups,F], each block of F/groups "
               "outputs reads its own block of C/groups inputs (depthwise: groups = C)", {}, 1, 1 << 16});
  return a;
}

// Channels split into `groups` blocks: both counts must divide.
static void check_groups(int64_t groups, int64_t in_channels, int64_t out_channels) {
  if (in_channels % groups != 0 || out_channels % groups != 0) {
    OpError e("attribute 'groups': " + std::to_string(groups) + " groups do not divide " + std::to_string(in_channels) +
              " input and " + std::to_string(out_channels) + " output channels");
    e.attr_problems = {{"groups", e.what()}};
    throw e;
  }
}

static void check_rank4(const TensorType& t, const char* what) {
  if (t.rank() != 4) throw OpError(std::string(what) + " must be rank 4, got " + type_str(t));
  if (!is_float(t.dtype)) throw OpError(std::string(what) + " must be float, got " + type_str(t));
  for (size_t i = 1; i < 4; ++i)
    if (t.shape[i] == kOpenDim) throw OpError(std::string(what) + " may only have an open batch dimension");
}

static void add_conv_ops(OpRegistry& r) {
  r.add({.name = "conv2d", .family = "conv",
         .summary = "2-D cross-correlation, NHWC input and HWIO filter (or NCHW and OIHW), no bias",
         .inputs = {"x", "w"}, .attrs = [] { auto a = conv_attrs(); a.push_back(layout_attr()); return a; }(),
         .shape_rule = "x: [N,H,W,C], w: [KH,KW,C,F] -> [N,OH,OW,F]; OH = (H + pads - ((KH-1)*D+1))/S + 1 (same: ceil(H/S))",
         .infer = [](const InferCtx& c) {
           check_rank4(c.in[0], "conv2d input x");
           check_rank4(c.in[1], "conv2d filter w");
           if (c.in[1].shape[0] == kOpenDim) throw OpError("conv2d filter must be static");
           if (c.in[0].dtype != c.in[1].dtype) throw OpError("input and filter dtypes differ");
           const auto &x = c.in[0].shape, &w = c.in[1].shape;
           const int64_t groups = c.i("groups");
           check_groups(groups, x[3], w[3]);
           if (x[3] != w[2] * groups)
             throw OpError("input has " + std::to_string(x[3]) + " channels (dimension 3 of " + shape_str(x) +
                           ") but the filter " + shape_str(w) + " expects " + std::to_string(w[2] * groups) +
                           (groups > 1 ? " (" + std::to_string(w[2]) + " per group x " + std::to_string(groups) + " groups)" : ""));
           auto g = conv_geometry_of(x[1], x[2], w[0], w[1], c.attrs);
           return TensorType{c.in[0].dtype, {x[0], g.oh, g.ow, w[3]}};
         },
         .pattern = OpPattern::contraction,
         .samples = {{{{{-1, 7, 9, 3}}, {{3, 3, 3, 4}}}},
                     {{{{-1, 7, 9, 3}}, {{3, 2, 3, 5}}}, {{"strides", {2, 2}}, {"padding", "same"}}},
                     {{{{-1, 9, 8, 2}}, {{3, 2, 2, 3}}}, {{"dilations", {2, 3}}, {"padding", {1, 0, 2, 1}}}},
                     {{{{-1, 9, 9, 2}}, {{3, 3, 2, 2}}}, {{"dilations", {2, 2}}, {"strides", {2, 1}}, {"padding", "same"}}},
                     {{{{-1, 7, 8, 4}}, {{3, 3, 2, 6}}}, {{"groups", 2}}},
                     {{{{-1, 6, 7, 3}}, {{3, 3, 1, 3}}}, {{"groups", 3}, {"strides", {2, 2}}, {"padding", "same"}}},
                     {{{{-1, 4, 7, 6}}, {{6, 2, 3, 2}}}, {{"layout", "NCHW"}, {"groups", 2}, {"padding", {1, 0, 1, 1}}}}},
         .rewrite = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           return channels_first_as_last(b, "conv2d", in, a, "NHWC", true);
         }});

  r.add({.name = "conv2d_backprop_input", .family = "conv",
         .summary = "gradient of conv2d with respect to its input (a transposed convolution)",
         .inputs = {"dy", "w"},
         .attrs = [] { auto a = conv_attrs(); a.push_back({"input_hw", AttrKind::IntList, true, nullptr, "[H, W] of the forward input", {}, 1, 1 << 20}); return a; }(),
         .shape_rule = "dy: [N,OH,OW,F], w: [KH,KW,C,F] -> [N,H,W,C]",
         .infer = [](const InferCtx& c) {
           check_rank4(c.in[0], "dy");
           check_rank4(c.in[1], "w");
           auto hw = c.ints("input_hw");
           if (hw.size() != 2) throw OpError("input_hw must be [H, W]");
           const auto &dy = c.in[0].shape, &w = c.in[1].shape;
           auto g = conv_geometry_of(hw[0], hw[1], w[0], w[1], c.attrs);
           if (g.oh != dy[1] || g.ow != dy[2] || dy[3] != w[3])
             throw OpError("dy " + shape_str(dy) + " does not match a conv of " + shape_str(w) + " over " +
                           std::to_string(hw[0]) + "x" + std::to_string(hw[1]));
           check_groups(c.i("groups"), w[2] * c.i("groups"), w[3]);
           return TensorType{c.in[0].dtype, {dy[0], hw[0], hw[1], w[2] * c.i("groups")}};
         },
         .pattern = OpPattern::contraction,
         .samples = {{{{{-1, 5, 7, 4}}, {{3, 3, 3, 4}}}, {{"input_hw", {7, 9}}}},
                     {{{{-1, 8, 6, 3}}, {{3, 2, 2, 3}}}, {{"input_hw", {9, 8}}, {"dilations", {2, 3}}, {"padding", {1, 0, 2, 1}}}},
                     {{{{-1, 5, 6, 6}}, {{3, 3, 2, 6}}}, {{"input_hw", {7, 8}}, {"groups", 2}}},
                     {{{{-1, 4, 5, 5}}, {{3, 2, 3, 5}}}, {{"strides", {2, 2}}, {"padding", "same"}, {"input_hw", {7, 9}}}}}});

  r.add({.name = "conv2d_backprop_filter", .family = "conv",
         .summary = "gradient of conv2d with respect to its filter (sums over the batch)",
         .inputs = {"x", "dy"},
         .attrs = [] { auto a = conv_attrs(); a.push_back({"filter_hw", AttrKind::IntList, true, nullptr, "[KH, KW]", {}, 1, 1 << 20}); return a; }(),
         .shape_rule = "x: [N,H,W,C], dy: [N,OH,OW,F] -> [KH,KW,C,F]",
         .infer = [](const InferCtx& c) {
           check_rank4(c.in[0], "x");
           check_rank4(c.in[1], "dy");
           auto k = c.ints("filter_hw");
           if (k.size() != 2) throw OpError("filter_hw must be [KH, KW]");
           const auto &x = c.in[0].shape, &dy = c.in[1].shape;
           auto g = conv_geometry_of(x[1], x[2], k[0], k[1], c.attrs);
           if (g.oh != dy[1] || g.ow != dy[2])
             throw OpError("dy " + shape_str(dy) + " does not match the conv output of x " + shape_str(x));
           check_groups(c.i("groups"), x[3], dy[3]);
           return TensorType{c.in[0].dtype, {k[0], k[1], x[3] / c.i("groups"), dy[3]}};
         },
         .pattern = OpPattern::contraction,
         .samples = {{{{{-1, 7, 9, 3}}, {{-1, 5, 7, 4}}}, {{"filter_hw", {3, 3}}}},
                     {{{{-1, 9, 8, 2}}, {{-1, 8, 6, 3}}}, {{"filter_hw", {3, 2}}, {"dilations", {2, 3}}, {"padding", {1, 0, 2, 1}}}},
                     {{{{-1, 7, 8, 4}}, {{-1, 5, 6, 6}}}, {{"filter_hw", {3, 3}}, {"groups", 2}}},
                     {{{{-1, 7, 9, 3}}, {{-1, 4, 5, 5}}}, {{"strides", {2, 2}}, {"padding", "same"}, {"filter_hw", {3, 2}}}}}});
}

// ---- gradient rules (compiler/autodiff calls them) ----
// conv2d's gradients are the two backprop ops. Each of the three is linear in
// each input, so the others' gradients are again these three ops: the input
// gradient's (conv2d_transpose's) are a convolution and a filter gradient.
static void add_conv_gradients(OpRegistry& r) {
  auto geometry = [](const Attrs& a) {
    return Attrs{{"strides", a.at("strides")}, {"padding", a.at("padding")}, {"dilations", a.at("dilations")},
                 {"groups", a.at("groups")}};
  };
  r.find_mut("conv2d_backprop_input")->grad = [geometry](GradCtx& c) -> std::vector<NodeId> {
    const Attrs attrs = c.graph().node(c.node).attrs;
    const Shape ws = c.type(c.x[1]).shape;
    Attrs filter = geometry(attrs);
    filter["filter_hw"] = {ws[0], ws[1]};
    return {c.b.add("conv2d", {c.dy, c.x[1]}, geometry(attrs)),
            c.b.add("conv2d_backprop_filter", {c.dy, c.x[0]}, filter)};
  };
  r.find_mut("conv2d_backprop_filter")->grad = [geometry](GradCtx& c) -> std::vector<NodeId> {
    const Attrs attrs = c.graph().node(c.node).attrs;
    const Shape xs = c.type(c.x[0]).shape;
    Attrs input = geometry(attrs);
    input["input_hw"] = {xs[1], xs[2]};
    return {c.b.add("conv2d_backprop_input", {c.x[1], c.dy}, input), c.b.add("conv2d", {c.x[0], c.dy}, geometry(attrs))};
  };
  r.find_mut("conv2d")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    const Attrs attrs = c.graph().node(c.node).attrs;
    const Shape xs = c.type(c.x[0]).shape, ws = c.type(c.x[1]).shape;
    Attrs common{{"strides", attrs.at("strides")}, {"padding", attrs.at("padding")}, {"dilations", attrs.at("dilations")},
                 {"groups", attrs.at("groups")}};
    Attrs in_attrs = common, filter_attrs = common;
    in_attrs["input_hw"] = {xs[1], xs[2]};
    filter_attrs["filter_hw"] = {ws[0], ws[1]};
    return {c.b.add("conv2d_backprop_input", {c.dy, c.x[1]}, in_attrs),
            c.b.add("conv2d_backprop_filter", {c.x[0], c.dy}, filter_attrs)};
  };
}

// ---- reference kernels (compiler/interp runs them) ----
// Direct loops, TF semantics: with "same" padding the extra pad row/column
// goes to the bottom/right, and padded taps contribute nothing.
namespace {

struct ConvShapes {
  size_t n, h, w, c, kh, kw, f;
  ConvGeometry g;
};

ConvShapes conv_shapes(const Attrs& a, size_t n, size_t h, size_t w, size_t c, size_t kh, size_t kw, size_t f) {
  ConvGeometry g = conv_geometry_of(static_cast<int64_t>(h), static_cast<int64_t>(w), static_cast<int64_t>(kh),
                                    static_cast<int64_t>(kw), a);
  return {n, h, w, c, kh, kw, f, g};
}

// Calls tap(n, oy, ox, ky, kx, iy, ix) for every filter tap that lands inside the input.
template <class Tap>
void for_each_tap(const ConvShapes& s, Tap tap) {
  for (size_t n = 0; n < s.n; ++n)
    for (int64_t oy = 0; oy < s.g.oh; ++oy)
      for (int64_t ox = 0; ox < s.g.ow; ++ox)
        for_each_window_tap(s.g, oy, ox, [&](int64_t ky, int64_t kx, int64_t iy, int64_t ix) {
          tap(n, static_cast<size_t>(oy), static_cast<size_t>(ox), static_cast<size_t>(ky), static_cast<size_t>(kx),
              static_cast<size_t>(iy), static_cast<size_t>(ix));
        });
}

// Calls pad(n, oy, ox, ky, kx) for every filter tap that lands in the padding.
// Padding is zeros that take part in the products, as in the generated code's
// im2col GEMM: 0 x a non-finite weight (or gradient) is a NaN there too.
template <class Pad>
void for_each_padding_tap(const ConvShapes& s, Pad pad) {
  const ConvGeometry& g = s.g;
  for (size_t n = 0; n < s.n; ++n)
    for (int64_t oy = 0; oy < g.oh; ++oy)
      for (int64_t ox = 0; ox < g.ow; ++ox)
        for (int64_t ky = 0; ky < g.kh; ++ky)
          for (int64_t kx = 0; kx < g.kw; ++kx) {
            int64_t iy = oy * g.sh - g.pad_top + ky * g.dh, ix = ox * g.sw - g.pad_left + kx * g.dw;
            if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w)
              pad(n, static_cast<size_t>(oy), static_cast<size_t>(ox), static_cast<size_t>(ky), static_cast<size_t>(kx));
          }
}

interp::Array zero_array(std::vector<size_t> shape) {
  interp::Array a = interp::Array::from_shape(shape);
  a.fill(0.0);
  return a;
}

}  // namespace

static void add_conv_reference(OpRegistry& r) {
  r.find_mut("conv2d")->reference = [](interp::RefCtx& c) {
    const auto &x = *c.in[0], &w = *c.in[1];
    auto s = conv_shapes(c.attrs, x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3], w.shape()[0], w.shape()[1],
                         w.shape()[3]);
    size_t oh = static_cast<size_t>(s.g.oh), ow = static_cast<size_t>(s.g.ow);
    c.out = zero_array({s.n, oh, ow, s.f});
    const double *px = x.data(), *pw = w.data();
    double* po = c.out.data();
    const size_t groups = static_cast<size_t>(s.g.groups), cg = s.c / groups, fg = s.f / groups;
    for_each_tap(s, [&](size_t n, size_t oy, size_t ox, size_t ky, size_t kx, size_t iy, size_t ix) {
      const double* xin = px + ((n * s.h + iy) * s.w + ix) * s.c;
      double* y = po + ((n * oh + oy) * ow + ox) * s.f;
      for (size_t gi = 0; gi < groups; ++gi)
        for (size_t ci = 0; ci < cg; ++ci) {
          const double* wrow = pw + ((ky * s.kw + kx) * cg + ci) * s.f + gi * fg;
          for (size_t f = 0; f < fg; ++f) y[gi * fg + f] += xin[gi * cg + ci] * wrow[f];
        }
    });
    for_each_padding_tap(s, [&](size_t n, size_t oy, size_t ox, size_t ky, size_t kx) {
      double* y = po + ((n * oh + oy) * ow + ox) * s.f;
      for (size_t gi = 0; gi < groups; ++gi)
        for (size_t ci = 0; ci < cg; ++ci) {
          const double* wrow = pw + ((ky * s.kw + kx) * cg + ci) * s.f + gi * fg;
          for (size_t f = 0; f < fg; ++f) y[gi * fg + f] += 0.0 * wrow[f];
        }
    });
  };

  r.find_mut("conv2d_backprop_input")->reference = [](interp::RefCtx& c) {
    const auto &dy = *c.in[0], &w = *c.in[1];
    auto hw = c.attrs.at("input_hw").get<std::vector<size_t>>();
    auto s = conv_shapes(c.attrs, dy.shape()[0], hw[0], hw[1], w.shape()[2] * c.attrs.at("groups").get<size_t>(),
                         w.shape()[0], w.shape()[1], w.shape()[3]);
    size_t oh = static_cast<size_t>(s.g.oh), ow = static_cast<size_t>(s.g.ow);
    c.out = zero_array({s.n, s.h, s.w, s.c});
    const double *pdy = dy.data(), *pw = w.data();
    double* pdx = c.out.data();
    for_each_tap(s, [&](size_t n, size_t oy, size_t ox, size_t ky, size_t kx, size_t iy, size_t ix) {
      const double* g = pdy + ((n * oh + oy) * ow + ox) * s.f;
      double* dx = pdx + ((n * s.h + iy) * s.w + ix) * s.c;
      const size_t groups = static_cast<size_t>(s.g.groups), cg = s.c / groups, fg = s.f / groups;
      for (size_t gi = 0; gi < groups; ++gi)
        for (size_t ci = 0; ci < cg; ++ci) {
          const double* wrow = pw + ((ky * s.kw + kx) * cg + ci) * s.f + gi * fg;
          double acc = 0;
          for (size_t f = 0; f < fg; ++f) acc += g[gi * fg + f] * wrow[f];
          dx[gi * cg + ci] += acc;
        }
    });
    if (!input_gradient_as_convolution(s.g)) return;
    const size_t groups = static_cast<size_t>(s.g.groups), cg = s.c / groups, fg = s.f / groups;
    for (size_t n = 0; n < s.n; ++n)
      for (int64_t iy = 0; iy < s.g.h; ++iy)
        for (int64_t ix = 0; ix < s.g.w; ++ix)
          for (int64_t ky = 0; ky < s.g.kh; ++ky)
            for (int64_t kx = 0; kx < s.g.kw; ++kx) {
              const int64_t oy = iy + s.g.pad_top - ky * s.g.dh, ox = ix + s.g.pad_left - kx * s.g.dw;
              if (oy >= 0 && oy < s.g.oh && ox >= 0 && ox < s.g.ow) continue;
              double* dx = pdx + ((n * s.h + static_cast<size_t>(iy)) * s.w + static_cast<size_t>(ix)) * s.c;
              for (size_t gi = 0; gi < groups; ++gi)
                for (size_t ci = 0; ci < cg; ++ci) {
                  const double* wrow = pw + ((static_cast<size_t>(ky) * s.kw + static_cast<size_t>(kx)) * cg + ci) * s.f + gi * fg;
                  for (size_t f = 0; f < fg; ++f) dx[gi * cg + ci] += 0.0 * wrow[f];
                }
            }
  };

  r.find_mut("conv2d_backprop_filter")->reference = [](interp::RefCtx& c) {
    const auto &x = *c.in[0], &dy = *c.in[1];
    auto k = c.attrs.at("filter_hw").get<std::vector<size_t>>();
    auto s = conv_shapes(c.attrs, x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3], k[0], k[1], dy.shape()[3]);
    size_t oh = static_cast<size_t>(s.g.oh), ow = static_cast<size_t>(s.g.ow);
    const size_t groups = static_cast<size_t>(s.g.groups), cg = s.c / groups, fg = s.f / groups;
    c.out = zero_array({s.kh, s.kw, cg, s.f});
    const double *px = x.data(), *pdy = dy.data();
    double* pdw = c.out.data();
    for_each_tap(s, [&](size_t n, size_t oy, size_t ox, size_t ky, size_t kx, size_t iy, size_t ix) {
      const double* xin = px + ((n * s.h + iy) * s.w + ix) * s.c;
      const double* g = pdy + ((n * oh + oy) * ow + ox) * s.f;
      for (size_t gi = 0; gi < groups; ++gi)
        for (size_t ci = 0; ci < cg; ++ci) {
          double* dwrow = pdw + ((ky * s.kw + kx) * cg + ci) * s.f + gi * fg;
          for (size_t f = 0; f < fg; ++f) dwrow[f] += xin[gi * cg + ci] * g[gi * fg + f];
        }
    });
    for_each_padding_tap(s, [&](size_t n, size_t oy, size_t ox, size_t ky, size_t kx) {
      const double* g = pdy + ((n * oh + oy) * ow + ox) * s.f;
      for (size_t gi = 0; gi < groups; ++gi)
        for (size_t ci = 0; ci < cg; ++ci) {
          double* dwrow = pdw + ((ky * s.kw + kx) * cg + ci) * s.f + gi * fg;
          for (size_t f = 0; f < fg; ++f) dwrow[f] += 0.0 * g[gi * fg + f];
        }
    });
  };
}

// One registration for the family: its ops, then their gradients, reference
// kernels and lowerings.
void register_conv_family(OpRegistry& r) {
  add_conv_ops(r);
  // A window of kh x kw x (input channels per group) per output element; the
  // transposed form scatters one such window per input element.
  r.find_mut("conv2d")->algebra.scales_through_input = [](const Node&) { return 1; };  // kernel [kh, kw, C/g, F]
  r.find_mut("conv2d")->algebra.linear_inputs = {0, 1};
  // im2col GEMMs per group: the forward product windows x filter, the input
  // gradient dy x filter^T (its columns scattered back by col2im), the filter
  // gradient windows^T x dy (summed over the batch's positions).
  r.find_mut("conv2d")->gemms = [](const Graph& g, const Node& n, int64_t batch) {
    const Shape& w = g.node(n.inputs[1]).type.shape;  // [KH, KW, C/G, F]
    const int64_t groups = n.attrs.value("groups", int64_t{1}), positions = numel(n.type.shape, batch) / w[3];
    return std::vector<GemmShape>{{.count = groups, .m = positions, .k = w[0] * w[1] * w[2], .n = w[3] / groups}};
  };
  r.find_mut("conv2d_backprop_input")->gemms = [](const Graph& g, const Node& n, int64_t batch) {
    const Shape& dy = g.node(n.inputs[0]).type.shape;
    const Shape& w = g.node(n.inputs[1]).type.shape;
    const int64_t groups = n.attrs.value("groups", int64_t{1});
    return std::vector<GemmShape>{{.count = groups, .m = numel(dy, batch) / w[3], .k = w[3] / groups,
                                   .n = w[0] * w[1] * w[2], .trans_b = true}};
  };
  r.find_mut("conv2d_backprop_filter")->gemms = [](const Graph& g, const Node& n, int64_t batch) {
    const Shape& dy = g.node(n.inputs[1]).type.shape;
    const Shape& dw = n.type.shape;  // [KH, KW, C/G, F]
    const int64_t groups = n.attrs.value("groups", int64_t{1});
    return std::vector<GemmShape>{{.count = groups, .m = dw[0] * dw[1] * dw[2], .k = numel(dy, batch) / dw[3],
                                   .n = dw[3] / groups, .trans_a = true}};
  };
  add_conv_gradients(r);
  add_conv_reference(r);
  add_conv_lowering(r);
  for (const char* name : {"conv2d", "conv2d_backprop_input"}) r.find_mut(name)->mixes_along = mixes_along_all_but_batch;
}

}  // namespace kiln
