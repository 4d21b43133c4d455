// Average pooling (NHWC) and its gradient, and the global pools (means and
// maxima over all of H and W). An output is the sum of its window's taps
// inside the input over a count: the taps inside the input, or with
// count_include_pad also those on the explicit padding.
#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/conv.h"
#include "compiler/ops/conv_lowering.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

namespace {

std::vector<AttrSpec> avgpool_attrs() {
  std::vector<AttrSpec> a = {{"pool", AttrKind::IntList, false, nlohmann::json::array({2, 2}), "[ph, pw] window", {}, 1, 1024},
                             {"strides", AttrKind::IntList, false, nullptr, "[sh, sw] (default: the window)", {}, 1, 1024}};
  for (auto& w : window_attrs(false)) a.push_back(w);
  a.push_back({"ceil_mode", AttrKind::Bool, false, false, "a partial last window counts (output size rounds up)"});
  a.push_back({"count_include_pad", AttrKind::Bool, false, false, "divide by the window's taps on the padding too"});
  return a;
}

TensorType avgpool_output(const TensorType& x, const Attrs& a) {
  if (x.rank() != 4 || !is_float(x.dtype)) throw OpError("avgpool2d input must be a float NHWC tensor, got " + type_str(x));
  for (size_t i = 1; i < 4; ++i)
    if (x.shape[i] == kOpenDim) throw OpError("avgpool2d input may only have an open batch dimension");
  auto g = pool_geometry_of(x.shape[1], x.shape[2], a);
  return {x.dtype, {x.shape[0], g.oh, g.ow, x.shape[3]}};
}

// Taps of a window starting at `start` (of `taps`) counted along one axis.
int64_t counted(int64_t start, int64_t taps, int64_t size, int64_t pad_lo, int64_t pad_hi, bool include_pad) {
  int64_t lo = include_pad ? -pad_lo : 0, hi = include_pad ? size + pad_hi : size;
  return std::max<int64_t>(0, std::min(start + taps, hi) - std::max(start, lo));
}

lower::E counted_expr(lower::E start, int64_t taps, int64_t size, int64_t pad_lo, int64_t pad_hi, bool include_pad) {
  using lower::E;
  E lo = include_pad ? E(-pad_lo) : E(0), hi = include_pad ? E(size + pad_hi) : E(size);
  return lower::max(E(0), lower::min(start + E(taps), hi) - lower::max(start, lo));
}

}  // namespace

static void add_avgpool_ops(OpRegistry& r) {
  r.add({.name = "avgpool2d", .family = "avgpool", .summary = "mean over windows, NHWC (or NCHW)", .inputs = {"x"},
         .attrs = [] { auto a = avgpool_attrs(); a.push_back(layout_attr()); return a; }(),
         .shape_rule = "x: [N,H,W,C] -> [N,OH,OW,C] (OH as for maxpool2d)",
         .infer = [](const InferCtx& c) { return avgpool_output(c.in[0], c.attrs); },
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 6, 6, 3}}}},
                     {{{{-1, 7, 9, 2}}}, {{"pool", {3, 2}}, {"strides", {2, 3}}, {"padding", "same"}}},
                     {{{{-1, 7, 8, 2}}}, {{"pool", {3, 3}}, {"strides", {2, 2}}, {"padding", {1, 0, 1, 0}},
                                          {"count_include_pad", true}, {"ceil_mode", true}}},
                     {{{{-1, 2, 5, 6}}}, {{"layout", "NCHW"}, {"pool", {2, 3}}, {"padding", "same"}}}},
         .rewrite = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           return channels_first_as_last(b, "avgpool2d", in, a, "NHWC", false);
         }});
  r.add({.name = "avgpool2d_grad", .family = "avgpool",
         .summary = "gradient of avgpool2d: each output's gradient spread evenly over its window's counted taps",
         .inputs = {"dy"},
         .attrs = [] {
           auto a = avgpool_attrs();
           a.push_back({"input_hw", AttrKind::IntList, true, nullptr, "[H, W] of the pooled input", {}, 1, 1 << 20});
           return a;
         }(),
         .shape_rule = "dy: avgpool2d's output -> [N,H,W,C]",
         .infer = [](const InferCtx& c) {
           auto hw = c.ints("input_hw");
           if (hw.size() != 2) throw OpError("input_hw must be [H, W]");
           TensorType x{c.in[0].dtype, {c.in[0].shape[0], hw[0], hw[1], c.in[0].shape[3]}};
           if (avgpool_output(x, c.attrs).shape != c.in[0].shape)
             throw OpError("dy " + type_str(c.in[0]) + " is not the output of this pooling of " + shape_str(x.shape));
           return x;
         },
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 3, 3, 3}}}, {{"input_hw", {6, 6}}}},
                     // windows apart: gaps between them, and a "same" pad's partial window
                     {{{{-1, 2, 3, 2}}}, {{"strides", {3, 3}}, {"input_hw", {7, 8}}}},
                     {{{{-1, 3, 3, 2}}}, {{"padding", "same"}, {"input_hw", {5, 5}}}},
                     {{{{-1, 4, 4, 2}}}, {{"pool", {3, 3}}, {"strides", {2, 2}}, {"padding", {1, 0, 1, 0}},
                                          {"count_include_pad", true}, {"ceil_mode", true}, {"input_hw", {7, 8}}}}}});
  for (bool mean : {true, false})
    r.add({.name = mean ? "global_avgpool2d" : "global_maxpool2d", .family = "avgpool",
           .summary = mean ? "mean over H and W (NHWC)" : "maximum over H and W (NHWC)", .inputs = {"x"},
           .attrs = {{"keepdims", AttrKind::Bool, false, false, "keep H and W as size 1 ([N,1,1,C])"}, layout_attr()},
           .shape_rule = "x: [N,H,W,C] -> [N,C] (keepdims: [N,1,1,C]; NCHW: [N,C,1,1])",
           .expand = [mean](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
             if (b.type(in[0]).rank() != 4) throw OpError("needs a rank-4 input, got " + type_str(b.type(in[0])));
             const bool nchw = a.at("layout") == "NCHW";
             return b.add(mean ? "reduce_mean" : "reduce_max", {in[0]},
                          {{"axes", nchw ? std::vector<int64_t>{2, 3} : std::vector<int64_t>{1, 2}}, {"keepdims", a.at("keepdims")}});
           },
           .pattern = OpPattern::reduction,
           .samples = {{{{{-1, 5, 7, 3}}}}, {{{{-1, 3, 2, 4}}}, {{"keepdims", true}}}, {{{{-1, 3, 2, 4}}}, {{"layout", "NCHW"}}}}});
}

static void add_avgpool_gradients(OpRegistry& r) {
  r.find_mut("avgpool2d")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    Attrs a = c.graph().node(c.node).attrs;
    a.erase("layout");  // (always NHWC here: NCHW was rewritten)
    const Shape xs = c.type(c.x[0]).shape;
    a["input_hw"] = {xs[1], xs[2]};
    return {c.b.add("avgpool2d_grad", {c.dy}, a)};
  };
  // avgpool2d_grad is linear: its adjoint is avgpool2d.
  r.find_mut("avgpool2d_grad")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    Attrs a = c.graph().node(c.node).attrs;
    a.erase("input_hw");
    return {c.b.add("avgpool2d", {c.dy}, a)};
  };
}

// Calls visit(n, oy, ox, iy, ix, 1 / count) for each tap of each window inside the input.
template <class Visit>
static void for_each_avg_tap(const ConvGeometry& g, size_t n, const Attrs& a, Visit visit) {
  const bool include = a.at("count_include_pad").get<bool>();
  for (size_t b = 0; b < n; ++b)
    for (int64_t oy = 0; oy < g.oh; ++oy)
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        int64_t top = oy * g.sh - g.pad_top, left = ox * g.sw - g.pad_left;
        double count = static_cast<double>(counted(top, g.kh, g.h, g.pad_top, g.pad_bottom, include) *
                                           counted(left, g.kw, g.w, g.pad_left, g.pad_right, include));
        for_each_window_tap(g, oy, ox, [&](int64_t, int64_t, int64_t iy, int64_t ix) {
          visit(b, oy, ox, iy, ix, 1.0 / count);
        });
      }
}

// Each output element is the scaled sum of its window's taps; the gradient
// sends it back over the same taps with the same scale. `pooled` points at
// the [N,OH,OW,C] side, `image` at the [N,H,W,C] side.
static void average_windows(const ConvGeometry& g, size_t n, size_t ch, const Attrs& a, const double* from, double* to,
                            bool to_pooled) {
  const size_t h = static_cast<size_t>(g.h), w = static_cast<size_t>(g.w), oh = static_cast<size_t>(g.oh),
               ow = static_cast<size_t>(g.ow);
  for_each_avg_tap(g, n, a, [&](size_t b, int64_t oy, int64_t ox, int64_t iy, int64_t ix, double scale) {
    size_t pooled = ((b * oh + static_cast<size_t>(oy)) * ow + static_cast<size_t>(ox)) * ch;
    size_t image = ((b * h + static_cast<size_t>(iy)) * w + static_cast<size_t>(ix)) * ch;
    size_t src = to_pooled ? image : pooled, dst = to_pooled ? pooled : image;
    for (size_t k = 0; k < ch; ++k) to[dst + k] += from[src + k] * scale;
  });
}

static void add_avgpool_reference(OpRegistry& r) {
  r.find_mut("avgpool2d")->reference = [](interp::RefCtx& c) {
    const interp::Array& x = *c.in[0];
    const size_t n = x.shape()[0], ch = x.shape()[3];
    ConvGeometry g = pool_geometry_of(static_cast<int64_t>(x.shape()[1]), static_cast<int64_t>(x.shape()[2]), c.attrs);
    c.out = interp::Array::from_shape({n, static_cast<size_t>(g.oh), static_cast<size_t>(g.ow), ch});
    c.out.fill(0.0);
    average_windows(g, n, ch, c.attrs, x.data(), c.out.data(), true);
  };
  r.find_mut("avgpool2d_grad")->reference = [](interp::RefCtx& c) {
    const interp::Array& dy = *c.in[0];
    auto hw = c.attrs.at("input_hw").get<std::vector<size_t>>();
    const size_t n = dy.shape()[0], ch = dy.shape()[3];
    ConvGeometry g = pool_geometry_of(static_cast<int64_t>(hw[0]), static_cast<int64_t>(hw[1]), c.attrs);
    c.out = interp::Array::from_shape({n, hw[0], hw[1], ch});
    c.out.fill(0.0);
    average_windows(g, n, ch, c.attrs, dy.data(), c.out.data(), false);
  };
}

// Per output position, its window's taps inside the input (channels
// innermost: contiguous, vectorized), times 1 / count; the gradient adds
// each output's share back over the same taps, one image per task.
static void add_avgpool_lowering(OpRegistry& r) {
  using namespace lower;
  auto inverse_count = [](const LowerCtx& c, const ConvGeometry& g, E oh, E ow, Scalar t) {
    const bool include = c.attrs.at("count_include_pad").get<bool>();
    E top = oh * g.sh - g.pad_top, left = ow * g.sw - g.pad_left;
    E count = counted_expr(top, g.kh, g.h, g.pad_top, g.pad_bottom, include) *
              counted_expr(left, g.kw, g.w, g.pad_left, g.pad_right, include);
    return lit(1, t) / cast(count, t);
  };
  r.find_mut("avgpool2d")->lower = [inverse_count](LowerCtx& c) {
    const BufRef &x = c.in[0], &y = c.out;
    const ConvGeometry g = pool_geometry_of(x.shape[1], x.shape[2], c.attrs);
    const int64_t C = x.shape[3];
    auto k = c.kernel("avgpool2d " + std::to_string(g.kh) + "x" + std::to_string(g.kw));
    image_rows(k, y.dim(0), g.oh, [&](E, E n, E oh) {
      k.loop("ow", 0, g.ow, [&](E ow) {
        E row = y.offset({n, oh, ow, 0});
        k.loop("c", 0, C, [&](E ch) { k.store(y, row + ch, lit(0, y.scalar())); });
        window_loops(k, g, oh, ow, [&](E ih, E iw, E, E) {
          E src = x.offset({n, ih, iw, 0});
          k.loop("c", 0, C, [&](E ch) { k.store(y, row + ch, k.load(y, row + ch) + k.load(x, src + ch)); });
        });
        E scale = k.let("scale", inverse_count(c, g, oh, ow, y.scalar()));
        k.loop("c", 0, C, [&](E ch) { k.store(y, row + ch, k.load(y, row + ch) * scale); });
      });
    }, numel(y.shape, c.max_batch()) >= kParallelMinElements);
  };
  r.find_mut("avgpool2d_grad")->lower = [inverse_count](LowerCtx& c) {
    const BufRef &dy = c.in[0], &dx = c.out;
    const ConvGeometry g = pool_geometry_of(dx.shape[1], dx.shape[2], c.attrs);
    const int64_t C = dx.shape[3];
    if (g.sh >= g.span_h() && g.sw >= g.span_w()) {
      // Windows that do not overlap: each input element takes the share of at
      // most one output, so one pass writes every element once, with no zero
      // fill and no read-modify-write (2x2 stride 2: each its window's dy / 4).
      auto k = c.kernel("avgpool2d gradient " + std::to_string(g.kh) + "x" + std::to_string(g.kw) +
                        ", windows apart: one write per element");
      k.loop("n", 0, dx.dim(0), [&](E n) {
        k.loop("ih", 0, g.h, [&](E ih) {
          E row = ih + g.pad_top, oh = k.let("oh", min(row / g.sh, E(g.oh - 1)));
          E in_rows = (row % g.sh < E(g.kh)) && (row / g.sh < E(g.oh));
          k.loop("iw", 0, g.w, [&](E iw) {
            E col = iw + g.pad_left, ow = k.let("ow", min(col / g.sw, E(g.ow - 1)));
            E covered = in_rows && (col % g.sw < E(g.kw)) && (col / g.sw < E(g.ow));
            E scale = k.let("scale", inverse_count(c, g, oh, ow, dx.scalar()));
            E at = dx.offset({n, ih, iw, 0}), grad = dy.offset({n, oh, ow, 0});
            k.loop("c", 0, C, [&](E ch) {
              k.store(dx, at + ch, select(covered, k.load(dy, grad + ch) * scale, lit(0, dx.scalar())));
            });
          });
        });
      }, numel(dx.shape, c.max_batch()) >= kParallelMinElements);
      return;
    }
    auto k = c.kernel("avgpool2d gradient " + std::to_string(g.kh) + "x" + std::to_string(g.kw));
    k.loop("n", 0, dx.dim(0), [&](E n) {
      E image = dx.offset({n, 0, 0, 0});
      k.loop("i", 0, g.h * g.w * C, [&](E i) { k.store(dx, image + i, lit(0, dx.scalar())); });
      k.loop("oh", 0, g.oh, [&](E oh) {
        k.loop("ow", 0, g.ow, [&](E ow) {
          E grad = dy.offset({n, oh, ow, 0});
          E scale = k.let("scale", inverse_count(c, g, oh, ow, dx.scalar()));
          window_loops(k, g, oh, ow, [&](E ih, E iw, E, E) {
            E at = dx.offset({n, ih, iw, 0});
            k.loop("c", 0, C, [&](E ch) {
              k.store(dx, at + ch, k.load(dx, at + ch) + k.load(dy, grad + ch) * scale);
            });
          });
        });
      });
    }, numel(dx.shape, c.max_batch()) >= kParallelMinElements);
  };
}

void register_avgpool_family(OpRegistry& r) {
  add_avgpool_ops(r);
  add_avgpool_gradients(r);
  add_avgpool_reference(r);
  add_avgpool_lowering(r);
  for (const char* name : {"avgpool2d", "avgpool2d_grad"}) r.find_mut(name)->mixes_along = mixes_along_all_but_batch;
}

}  // namespace kiln
