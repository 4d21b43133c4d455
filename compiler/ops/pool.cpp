// maxpool2d (NHWC, TF padding) and its gradient, which routes each output's
// gradient to the first maximal element of its window (as TF does).
#include <cmath>

#include "compiler/ir/builder.h"
#include "compiler/ops/conv_lowering.h"
#include "compiler/ops/conv.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

static std::vector<AttrSpec> pool_attrs() {
  std::vector<AttrSpec> a = {{"pool", AttrKind::IntList, false, nlohmann::json::array({2, 2}), "[ph, pw] window", {}, 1, 1024},
                             {"strides", AttrKind::IntList, false, nullptr, "[sh, sw] (default: the window)", {}, 1, 1024}};
  for (auto& w : window_attrs(true)) a.push_back(w);
  a.push_back({"ceil_mode", AttrKind::Bool, false, false, "a partial last window counts (output size rounds up)"});
  return a;
}

ConvGeometry pool_geometry_of(int64_t h, int64_t w, const Attrs& a) {
  auto p = a.at("pool").get<std::vector<int64_t>>();
  if (p.size() != 2) {
    OpError e("attribute 'pool': expected [ph, pw], got " + a.at("pool").dump());
    e.attr_problems = {{"pool", e.what()}};
    throw e;
  }
  ConvGeometry g = conv_geometry_of(h, w, p[0], p[1], a, p);
  if (a.value("ceil_mode", false)) {
    // One more window where a partial one remains, if it starts before the bottom padding ends.
    auto more = [](int64_t size, int64_t pad_lo, int64_t pad_hi, int64_t span, int64_t stride, int64_t out) {
      int64_t ceil_out = (size + pad_lo + pad_hi - span + stride - 1) / stride + 1;
      if ((ceil_out - 1) * stride >= size + pad_lo) --ceil_out;
      return std::max(out, ceil_out);
    };
    g.oh = more(h, g.pad_top, g.pad_bottom, g.span_h(), g.sh, g.oh);
    g.ow = more(w, g.pad_left, g.pad_right, g.span_w(), g.sw, g.ow);
  }
  return g;
}

// Shape of maxpool2d's output for input type x, with the attrs checked.
static TensorType pool_output(const TensorType& x, const Attrs& a) {
  if (x.rank() != 4) throw OpError("maxpool2d input must be rank 4 (NHWC), got " + type_str(x));
  auto g = pool_geometry_of(x.shape[1], x.shape[2], a);
  return {x.dtype, {x.shape[0], g.oh, g.ow, x.shape[3]}};
}

static void add_pool_ops(OpRegistry& r) {
  r.add({.name = "maxpool2d", .family = "pool", .summary = "max over windows, NHWC (or NCHW)", .inputs = {"x"},
         .attrs = [] { auto a = pool_attrs(); a.push_back(layout_attr()); return a; }(),
         .shape_rule = "x: [N,H,W,C] -> [N,OH,OW,C] (valid: OH=(H-PH)/S+1, same: ceil(H/S))",
         .infer = [](const InferCtx& c) { return pool_output(c.in[0], c.attrs); },
         .pattern = OpPattern::opaque,
         .kinks = Kinks::gradient_steps,
         .samples = {{{{{-1, 6, 6, 3}}}},
                     {{{{-1, 7, 9, 2}}}, {{"pool", {3, 2}}, {"strides", {2, 3}}, {"padding", "same"}}},
                     {{{{-1, 9, 8, 2}}}, {{"pool", {2, 3}}, {"strides", {1, 2}}, {"dilations", {2, 1}}, {"padding", {1, 1, 0, 2}}}},
                     {{{{-1, 3, 7, 6}}}, {{"layout", "NCHW"}, {"pool", {3, 2}}, {"strides", {2, 2}}}},
                     // more taps than the lowering sums in registers: its loop form
                     {{{{-1, 9, 10, 2}}}, {{"pool", {8, 7}}, {"padding", "same"}}}},
         .rewrite = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           return channels_first_as_last(b, "maxpool2d", in, a, "NHWC", false);
         }});
  r.add({.name = "maxpool2d_grad", .family = "pool",
         .summary = "gradient of maxpool2d: dy routed to the first maximum of each window of x",
         .inputs = {"x", "dy"}, .attrs = pool_attrs(),
         .shape_rule = "x: [N,H,W,C], dy: maxpool2d(x)'s shape -> [N,H,W,C]",
         .infer = [](const InferCtx& c) {
           TensorType y = pool_output(c.in[0], c.attrs);
           if (y.shape != c.in[1].shape)
             throw OpError("dy " + shape_str(c.in[1].shape) + " is not maxpool2d's output shape " + shape_str(y.shape));
           return c.in[0];
         },
         .pattern = OpPattern::opaque,
         .kinks = Kinks::gradient_steps,
         .samples = {{{{{-1, 6, 6, 3}}, {{-1, 3, 3, 3}}}},
                     {{{{-1, 7, 9, 2}}, {{-1, 4, 3, 2}}}, {{"pool", {3, 2}}, {"strides", {2, 3}}, {"padding", "same"}}}}});
}

// ---- gradient rules (compiler/autodiff calls them) ----
// maxpool2d_grad itself has no gradient rule (second order is not needed).
static void add_pool_gradients(OpRegistry& r) {
  r.find_mut("maxpool2d")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    Attrs attrs = c.graph().node(c.node).attrs;
    attrs.erase("layout");  // (always NHWC here: NCHW was rewritten)
    return {c.b.add("maxpool2d_grad", {c.x[0], c.dy}, attrs)};
  };
}

// ---- reference kernels (compiler/interp runs them) ----
// Calls visit(out_offset, in_offset_of_first_max) for each output element of
// maxpool2d over x. Windows are scanned row-major and only a strictly larger
// value replaces the best, so a tie goes to the first maximum; padded
// positions are skipped, so they never win.
template <class Visit>
static void for_each_window_max(const interp::Array& x, const Attrs& a, Visit visit) {
  size_t n = x.shape()[0], h = x.shape()[1], w = x.shape()[2], ch = x.shape()[3];
  auto g = pool_geometry_of(static_cast<int64_t>(h), static_cast<int64_t>(w), a);
  const double* px = x.data();
  size_t out = 0;
  for (size_t b = 0; b < n; ++b)
    for (int64_t oy = 0; oy < g.oh; ++oy)
      for (int64_t ox = 0; ox < g.ow; ++ox)
        for (size_t c = 0; c < ch; ++c, ++out) {
          bool found = false;
          size_t best = 0;
          for_each_window_tap(g, oy, ox, [&](int64_t, int64_t, int64_t iy, int64_t ix) {
            size_t at = ((b * h + static_cast<size_t>(iy)) * w + static_cast<size_t>(ix)) * ch + c;
            if (!found || interp::beats_first_max(px[at], px[best])) best = at, found = true;
          });
          visit(out, best);
        }
}

static void add_pool_reference(OpRegistry& r) {
  r.find_mut("maxpool2d")->reference = [](interp::RefCtx& c) {
    const interp::Array& x = *c.in[0];
    c.out = interp::Array::from_shape(c.concrete(c.node.type.shape));
    double* po = c.out.data();
    for_each_window_max(x, c.attrs, [&](size_t out, size_t best) { po[out] = x.data()[best]; });
  };
  r.find_mut("maxpool2d_grad")->reference = [](interp::RefCtx& c) {
    const interp::Array &x = *c.in[0], &dy = *c.in[1];
    c.out = interp::Array::from_shape(x.shape());
    c.out.fill(0.0);
    double* pdx = c.out.data();
    for_each_window_max(x, c.attrs, [&](size_t out, size_t best) { pdx[best] += dy.data()[out]; });
  };
}

// ---- lowering to loop IR (compiler/lower) ----
static ConvGeometry pool_geometry(const lower::LowerCtx& c) {
  const Shape& x = c.in[0].shape;
  return pool_geometry_of(x[1], x[2], c.attrs);
}

static void add_pool_lowering(OpRegistry& r) {
  using namespace lower;
  r.find_mut("maxpool2d")->lower = [](LowerCtx& c) {
    const BufRef &x = c.in[0], &y = c.out;
    ConvGeometry g = pool_geometry(c);
    int64_t C = x.shape[3];
    auto k = c.kernel("maxpool2d " + std::to_string(g.kh) + "x" + std::to_string(g.kw));
    E lowest = lit(-INFINITY, y.scalar());
    // (image, output row) pairs: ResNet-18's max pool at batch 1 took 0.19 ms on one thread.
    image_rows(k, y.dim(0), g.oh, [&](E, E n, E oh) {
      k.loop("ow", 0, g.ow, [&](E ow) {
        E row = y.offset({n, oh, ow, 0});
        if (g.kh * g.kw <= kMaxUnrolledTaps) {
          // The maximum stays in a register and is stored once. A tap in the
          // padding offers -inf, which leaves the maximum as it was (Op::Max
          // keeps a NaN): the same maxima, in the same order, as the loop form.
          std::vector<Pixel> taps;
          for (int64_t kh = 0; kh < g.kh; ++kh)
            for (int64_t kw = 0; kw < g.kw; ++kw) {
              Pixel p = pixel(x, g, n, oh * g.sh + (kh * g.dh - g.pad_top), ow * g.sw + (kw * g.dw - g.pad_left));
              taps.push_back({k.let("inside", p.inside), k.let("at", p.at)});
            }
          k.loop("c", 0, C, [&](E ch) {
            E m = lowest;
            for (const Pixel& t : taps) m = max(m, select(t.inside, k.load(x, t.at + ch), lowest));
            k.store(y, row + ch, m);
          });
          return;
        }
        k.loop("c", 0, C, [&](E ch) { k.store(y, row + ch, lowest); });
        window_loops(k, g, oh, ow, [&](E ih, E iw, E, E) {
          E src = x.offset({n, ih, iw, 0});
          k.loop("c", 0, C, [&](E ch) { k.store(y, row + ch, max(k.load(y, row + ch), k.load(x, src + ch))); });
        });
      });
    }, numel(y.shape, c.max_batch()) >= kParallelMinElements);
  };
  // Each output's gradient goes to the first maximum of its window (row-major
  // order). Channels innermost, so every loop is contiguous and vectorizes:
  // per window, its maximum per channel, then a pass over the window that
  // hands dy to the first position equal to it (a per-channel "done" flag).
  r.find_mut("maxpool2d_grad")->lower = [](LowerCtx& c) {
    const BufRef &x = c.in[0], &dy = c.in[1], &dx = c.out;
    ConvGeometry g = pool_geometry(c);
    int64_t C = x.shape[3];
    Shape rows{x.shape[0], C};
    BufRef best{c.scratch("window max " + c.node.name, x.dtype, rows), x.dtype, rows};
    BufRef done{c.scratch("window done " + c.node.name, x.dtype, rows), x.dtype, rows};
    auto k = c.kernel("maxpool2d gradient " + std::to_string(g.kh) + "x" + std::to_string(g.kw));
    E zero = lit(0, dx.scalar()), one = lit(1, dx.scalar());
    k.loop("n", 0, dx.dim(0), [&](E n) {
      E image = dx.offset({n, 0, 0, 0}), row = n * C;
      k.loop("i", 0, g.h * g.w * C, [&](E i) { k.store(dx, image + i, zero); });
      k.loop("oh", 0, g.oh, [&](E oh) {
        k.loop("ow", 0, g.ow, [&](E ow) {
          E grad = dy.offset({n, oh, ow, 0});
          k.loop("c", 0, C, [&](E ch) {
            k.store(best, row + ch, lit(-INFINITY, x.scalar()));
            k.store(done, row + ch, zero);
          });
          window_loops(k, g, oh, ow, [&](E ih, E iw, E, E) {
            E src = x.offset({n, ih, iw, 0});
            k.loop("c", 0, C, [&](E ch) {
              k.store(best, row + ch, max(k.load(best, row + ch), k.load(x, src + ch)));
            });
          });
          window_loops(k, g, oh, ow, [&](E ih, E iw, E, E) {
            E src = x.offset({n, ih, iw, 0});
            k.loop("c", 0, C, [&](E ch) {
              // The window's first maximum, or its first NaN (the max is then a NaN).
              E v = k.load(x, src + ch), m = k.load(best, row + ch);
              E hit = logical_or(v == m, (v != v) && (m != m)) && (k.load(done, row + ch) == zero);
              k.store(dx, src + ch, k.load(dx, src + ch) + select(hit, k.load(dy, grad + ch), zero));
              k.store(done, row + ch, select(hit, one, k.load(done, row + ch)));
            });
          });
        });
      });
    }, numel(dx.shape, c.max_batch()) >= kParallelMinElements);
  };
}

// One registration for the family: its ops, then their gradients, reference
// kernels and lowerings.
void register_pool_family(OpRegistry& r) {
  add_pool_ops(r);
  add_pool_gradients(r);
  add_pool_reference(r);
  add_pool_lowering(r);
  for (const char* name : {"maxpool2d", "maxpool2d_grad"}) r.find_mut(name)->mixes_along = mixes_along_all_but_batch;
}

}  // namespace kiln
