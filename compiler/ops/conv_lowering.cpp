// conv2d's lowering to Loop IR: the three convolution ops as packed GEMMs
// whose A operand is read through the convolution's windows (f32), or through
// an im2col matrix (other types), and the window loops the pools share.
#include "compiler/ops/conv_lowering.h"

#include "compiler/lower/gemm_blocking.h"
#include "compiler/ops/registry.h"

namespace kiln {

// ---- lowering to loop IR (compiler/lower) ----
// The geometry of the node's convolution over an h x w input with a kh x kw window.
static ConvGeometry geometry_of(const lower::LowerCtx& c, int64_t h, int64_t w, int64_t kh, int64_t kw) {
  return conv_geometry_of(h, w, kh, kw, c.attrs);
}

static std::string geometry_str(const ConvGeometry& g) {
  return std::to_string(g.kh) + "x" + std::to_string(g.kw) + " stride " + std::to_string(g.sh) + "x" +
         std::to_string(g.sw) + " pad " + std::to_string(g.pad_top) + "," + std::to_string(g.pad_left) +
         (g.dh != 1 || g.dw != 1 ? " dilation " + std::to_string(g.dh) + "x" + std::to_string(g.dw) : "");
}

static bool big(const lower::LowerCtx& c) { return numel(c.out.shape, c.max_batch()) >= lower::kParallelMinElements; }

void window_loops(lower::KernelBuilder& k, const ConvGeometry& g, lower::E oh, lower::E ow,
                  const std::function<void(lower::E, lower::E, lower::E, lower::E)>& body) {
  using namespace lower;
  E top = oh * g.sh - g.pad_top, left = ow * g.sw - g.pad_left;
  bool padded = g.pad_top > 0 || g.pad_left > 0 || (g.oh - 1) * g.sh + g.span_h() > g.h ||
                (g.ow - 1) * g.sw + g.span_w() > g.w;
  // Taps t with 0 <= top + t * d < size: from ceil(-top / d) to ceil((size - top) / d).
  auto first = [](E start, int64_t d) { return d == 1 ? max(E(0), -start) : (max(E(0), -start) + E(d - 1)) / E(d); };
  auto end = [](E start, int64_t size, int64_t taps, int64_t d) {
    return min(E(taps), d == 1 ? E(size) - start : (E(size) - start + E(d - 1)) / E(d));
  };
  E kh_lo = padded ? first(top, g.dh) : E(0), kh_hi = padded ? end(top, g.h, g.kh, g.dh) : E(g.kh);
  E kw_lo = padded ? first(left, g.dw) : E(0), kw_hi = padded ? end(left, g.w, g.kw, g.dw) : E(g.kw);
  k.loop("kh", kh_lo, kh_hi, [&](E kh) {
    k.loop("kw", kw_lo, kw_hi, [&](E kw) { body(top + kh * E(g.dh), left + kw * E(g.dw), kh, kw); });
  });
}

Pixel pixel(const lower::BufRef& x, const ConvGeometry& g, lower::E n, lower::E ih, lower::E iw) {
  using namespace lower;
  E inside = (ih >= 0) && (ih < g.h) && (iw >= 0) && (iw < g.w);
  E ihc = max(E(0), min(ih, E(g.h - 1))), iwc = max(E(0), min(iw, E(g.w - 1)));
  return {inside, x.offset({n, ihc, iwc, 0})};
}

void image_rows(lower::KernelBuilder& k, lower::E images, int64_t rows,
                const std::function<void(lower::E, lower::E, lower::E)>& body, bool parallel) {
  using namespace lower;
  k.loop("n_oh", 0, images * E(rows), [&](E n_oh) {
    E n = k.let("n", n_oh / E(rows)), oh = k.let("oh", n_oh % E(rows));  // (in this order: arguments have none)
    body(n_oh, n, oh);
  }, parallel);
}

// The im2col matrix of x as a scratch buffer: row (n*OH + oh)*OW + ow holds
// the window of that output position, (kh*KW + kw)*C + ch, zero in the padding.
// A 1x1 stride-1 unpadded convolution is its own im2col: x itself.
static lower::BufRef im2col(lower::LowerCtx& c, const lower::BufRef& x, const ConvGeometry& g) {
  using namespace lower;
  const int64_t kkc = g.kh * g.kw * g.c;
  if (g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pad_top == 0 && g.pad_left == 0 && g.oh == g.h &&
      g.ow == g.w)
    return x;
  Shape shape{x.shape[0], g.oh * g.ow * kkc};
  BufRef col{c.scratch("im2col " + c.node.name, x.dtype, shape), x.dtype, shape};
  bool padded = g.pad_top > 0 || g.pad_left > 0 || (g.oh - 1) * g.sh + g.span_h() > g.h ||
                (g.ow - 1) * g.sw + g.span_w() > g.w;
  auto k = c.kernel("im2col " + geometry_str(g));
  k.loop("n", 0, x.dim(0), [&](E n) {
    k.loop("oh", 0, g.oh, [&](E oh) {
      k.loop("ow", 0, g.ow, [&](E ow) {
        E row = ((n * g.oh + oh) * g.ow + ow) * kkc;
        k.loop("kh", 0, g.kh, [&](E kh) {
          k.loop("kw", 0, g.kw, [&](E kw) {
            E ih = oh * g.sh - g.pad_top + kh * E(g.dh), iw = ow * g.sw - g.pad_left + kw * E(g.dw);
            // Padding reads a clamped (in-bounds) pixel and stores zero instead.
            E inside = (ih >= 0) && (ih < g.h) && (iw >= 0) && (iw < g.w);
            E ihc = padded ? max(E(0), min(ih, E(g.h - 1))) : ih, iwc = padded ? max(E(0), min(iw, E(g.w - 1))) : iw;
            auto copy = [&](E dst, E first_channel, int64_t channels) {
              k.loop("c", 0, channels, [&](E ci) {
                E v = k.load(x, x.offset({n, ihc, iwc, first_channel + ci}));
                k.store(col, dst + ci, padded ? select(inside, v, lit(0, x.scalar())) : v);
              });
            };
            if (g.groups == 1) return copy(row + (kh * g.kw + kw) * g.c, E(0), g.c);
            // Grouped: each group's window columns together, (group, kh, kw, channel).
            const int64_t cg = g.c / g.groups;
            k.loop("g", 0, g.groups, [&](E gi) { copy(row + gi * (g.kh * g.kw * cg) + (kh * g.kw + kw) * cg, gi * cg, cg); });
          });
        });
      });
    });
  }, big(c));
  return col;
}

// A buffer viewed as a [rows, cols] matrix (rows may depend on the batch: the
// gemm's M or K is then set by the caller).
static lower::BufRef matrix(const lower::BufRef& b, int64_t cols, int64_t rows = kOpenDim) {
  return {b.id, b.dtype, {rows, cols}};
}

// A grouped convolution's GEMM: one product per group over column blocks of
// the same matrices (leading dimensions of the whole rows, each group's block
// `stride` columns on). One group: the plain GEMM, unchanged.
static void by_group(lower::GemmSpec& g, int64_t groups, int64_t lda, int64_t ldb, int64_t ldc, int64_t stride_a,
                     int64_t stride_b, int64_t stride_c) {
  if (groups == 1) return;
  g.lda = lda, g.ldb = ldb, g.ldc = ldc;
  g.batch = lower::c_int(groups);
  g.stride_a = stride_a, g.stride_b = stride_b, g.stride_c = stride_c;
}

// A 1x1 stride-1 unpadded convolution: its window matrix is the image itself.
static bool windows_are_pixels(const ConvGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pad_top == 0 && g.pad_left == 0 && g.oh == g.h &&
         g.ow == g.w;
}

// The windows of geometry g over an image of `channels` channels, `groups` groups.
static std::shared_ptr<const lower::GemmWindows> windows_of(const ConvGeometry& g, int64_t channels, int64_t groups) {
  auto w = std::make_shared<lower::GemmWindows>();
  w->h = g.h, w->w = g.w, w->channels = channels, w->cg = channels / groups;
  w->kh = g.kh, w->kw = g.kw, w->sh = g.sh, w->sw = g.sw, w->dh = g.dh, w->dw = g.dw;
  w->pad_top = g.pad_top, w->pad_left = g.pad_left, w->oh = g.oh, w->ow = g.ow;
  return w;
}

// The GEMM's A operand for the windows of g over image x: x itself when the
// windows are its pixels; read through the windows by the packed (f32) GEMM;
// else an im2col matrix.
static lower::BufRef window_matrix(lower::LowerCtx& c, const lower::BufRef& x, const ConvGeometry& g,
                                   std::shared_ptr<const lower::GemmWindows>* windows) {
  if (windows_are_pixels(g) || !lower::gemm_packed(x.dtype)) return im2col(c, x, g);
  *windows = windows_of(g, x.shape[3], g.groups);
  return x;
}

void add_conv_lowering(OpRegistry& r) {
  using namespace lower;
  // All three through the packed GEMM: with P = batch*OH*OW output positions
  // and the window matrix col [P, KH*KW*C] (read through the windows, or
  // im2col'd),
  //   forward          y [P, F]        = col @ w [KH*KW*C, F]
  //   input gradient   stride 1: a convolution of dy with the filter flipped
  //                    (dx [N*H*W, C] = dy's windows @ flip(w)); strided:
  //                    dcol [P, KH*KW*C] = dy [P, F] @ w^T, summed back into dx (col2im)
  //   filter gradient  dw^T [F, KH*KW*C] = dy^T @ col, transposed (f32);
  //                    dw [KH*KW*C, F] = col^T @ dy [P, F] (others, 1x1)
  r.find_mut("conv2d")->lower = [](LowerCtx& c) {
    const BufRef &x = c.in[0], &w = c.in[1], &y = c.out;
    ConvGeometry g = geometry_of(c, x.shape[1], x.shape[2], w.shape[0], w.shape[1]);
    g.c = x.shape[3];
    const int64_t kkc = g.kh * g.kw * g.c, G = g.groups, F = w.shape[3];
    if (is_depthwise(g, g.c, F)) return lower_depthwise_conv(c, g);
    if (winograd_applies(c, g, g.c, F)) return lower_winograd_conv(c, g, x, w, y);
    std::shared_ptr<const GemmWindows> windows;
    BufRef col = window_matrix(c, x, g, &windows);
    c.gemm(matrix(col, kkc / G), false, matrix(w, F / G, kkc / G), false, matrix(y, F / G),
           "conv2d " + geometry_str(g) + (windows ? " as a gemm over its windows" : " as im2col gemm"));
    GemmSpec& gs = c.kernels.back().gemm;
    gs.m = (x.dim(0) * (g.oh * g.ow)).p;
    gs.windows = windows;
    by_group(gs, G, kkc, F, F, windows ? g.c / G : kkc / G, F / G, F / G);
    c.size_gemm_scratch(gs);
  };
  r.find_mut("conv2d_backprop_input")->lower = [](LowerCtx& c) {
    const BufRef &dy = c.in[0], &w = c.in[1], &dx = c.out;
    ConvGeometry g = geometry_of(c, dx.shape[1], dx.shape[2], w.shape[0], w.shape[1]);
    const int64_t G = g.groups, C = dx.shape[3], Cg = C / G, F = w.shape[3], Fg = F / G, kkc = g.kh * g.kw * C,
                  kkcg = kkc / G;
    if (is_depthwise(g, C, F)) return lower_depthwise_input_gradient(c, g);
    if (input_gradient_as_convolution(g)) {
      // dx[ih] sums dy[ih + pad - k*d] w[k]: a convolution of dy with the
      // filter flipped (taps reversed, in and out channels swapped) and
      // padding span-1-pad. One GEMM over dy's windows, no window gradients.
      Shape fs{g.kh, g.kw, Fg, C};
      BufRef flipped{c.scratch("flipped filter " + c.node.name, w.dtype, fs), w.dtype, fs};
      auto k = c.kernel("conv2d input gradient " + geometry_str(g) + ": the filter flipped");
      k.loop("ky", 0, g.kh, [&](E ky) {
        k.loop("kx", 0, g.kw, [&](E kx) {
          k.loop("f", 0, Fg, [&](E f) {
            k.loop("co", 0, C, [&](E co) {
              E src = w.offset({E(g.kh - 1) - ky, E(g.kw - 1) - kx, co % E(Cg), (co / E(Cg)) * E(Fg) + f});
              k.store(flipped, flipped.offset({ky, kx, f, co}), k.load(w, src));
            });
          });
        });
      });
      ConvGeometry t = g;  // over dy (OH x OW, F channels) onto dx (H x W)
      t.h = g.oh, t.w = g.ow, t.oh = g.h, t.ow = g.w, t.c = F;
      t.pad_top = g.span_h() - 1 - g.pad_top, t.pad_left = g.span_w() - 1 - g.pad_left;
      if (winograd_applies(c, t, F, C)) return lower_winograd_conv(c, t, dy, flipped, dx);
      const int64_t kkf = g.kh * g.kw * F;
      std::shared_ptr<const GemmWindows> windows;
      BufRef col = window_matrix(c, dy, t, &windows);
      c.gemm(matrix(col, kkf / G), false, matrix(flipped, Cg, kkf / G), false, matrix(dx, Cg),
             "conv2d input gradient " + geometry_str(g) + " as a convolution of dy with the flipped filter");
      GemmSpec& gs = c.kernels.back().gemm;
      gs.m = (dx.dim(0) * (g.h * g.w)).p;
      gs.windows = windows;
      by_group(gs, G, kkf, C, C, windows ? Fg : kkf / G, Cg, Cg);
      c.size_gemm_scratch(gs);
      return;
    }
    Shape shape{dy.shape[0], g.oh * g.ow * kkc};
    BufRef dcol{c.scratch("col gradient " + c.node.name, dx.dtype, shape), dx.dtype, shape};
    c.gemm(matrix(dy, F / G), false, matrix(w, F / G, kkcg), true, matrix(dcol, kkcg),
           "conv2d input gradient " + geometry_str(g) + ": window gradients dy @ w^T");
    c.kernels.back().gemm.m = (dx.dim(0) * (g.oh * g.ow)).p;
    by_group(c.kernels.back().gemm, G, F, F, kkc, F / G, F / G, kkcg);
    // col2im: each image's windows added back into its pixels (images in parallel).
    auto k = c.kernel("conv2d input gradient " + geometry_str(g) + ": col2im");
    k.loop("n", 0, dx.dim(0), [&](E n) {
      E image = dx.offset({n, 0, 0, 0});
      k.loop("i", 0, g.h * g.w * C, [&](E i) { k.store(dx, image + i, lit(0, dx.scalar())); });
      k.loop("oh", 0, g.oh, [&](E oh) {
        k.loop("ow", 0, g.ow, [&](E ow) {
          E row = ((n * g.oh + oh) * g.ow + ow) * kkc;
          window_loops(k, g, oh, ow, [&](E ih, E iw, E kh, E kw) {
            E at = dx.offset({n, ih, iw, 0});
            auto add = [&](E src, E first_channel, int64_t channels) {
              k.loop("c", 0, channels, [&](E ci) {
                E to = at + first_channel + ci;
                k.store(dx, to, k.load(dx, to) + k.load(dcol, src + ci));
              });
            };
            if (G == 1) return add(row + (kh * g.kw + kw) * C, E(0), C);
            k.loop("g", 0, G, [&](E gi) { add(row + gi * kkcg + (kh * g.kw + kw) * Cg, gi * Cg, Cg); });
          });
        });
      });
    }, big(c));
  };
  r.find_mut("conv2d_backprop_filter")->lower = [](LowerCtx& c) {
    const BufRef &x = c.in[0], &dy = c.in[1], &dw = c.out;
    ConvGeometry g = geometry_of(c, x.shape[1], x.shape[2], dw.shape[0], dw.shape[1]);
    g.c = x.shape[3];
    const int64_t G = g.groups, F = dy.shape[3], kkc = g.kh * g.kw * g.c;
    if (is_depthwise(g, g.c, F)) return lower_depthwise_filter_gradient(c, g);
    if (gemm_packed(dw.dtype) && !windows_are_pixels(g)) {
      // dw^T [F, KH*KW*C] = dy^T @ the windows of x, then transposed: the
      // windows as B, whose panel rows (a position's taps x channels) are
      // contiguous in x, where as A's columns (dw = col^T @ dy) each element
      // would be a gather (43 ms against 20 for im2col, resnet20's first
      // stage, AVX2 host).
      const int64_t kkcg = kkc / G, Fg = F / G;
      Shape ts{F, kkcg};
      BufRef dwt{c.scratch("transposed filter gradient " + c.node.name, dw.dtype, ts), dw.dtype, ts};
      c.gemm(matrix(dy, Fg), true, matrix(x, kkcg), false, matrix(dwt, kkcg, Fg),
             "conv2d filter gradient " + geometry_str(g) + " as dy^T @ windows, transposed");
      GemmSpec& gs = c.kernels.back().gemm;
      gs.k = (x.dim(0) * (g.oh * g.ow)).p;
      gs.windows_b = windows_of(g, g.c, G);
      by_group(gs, G, F, kkc, kkcg, Fg, g.c / G, Fg * kkcg);
      auto k = c.kernel("conv2d filter gradient " + geometry_str(g) + ": transposed into [KH, KW, C, F]");
      k.loop("j", 0, kkcg, [&](E j) {
        k.loop("f", 0, F, [&](E f) { k.store(dw, j * E(F) + f, k.load(dwt, f * E(kkcg) + j)); });
      });
      return;
    }
    BufRef col = im2col(c, x, g);
    c.gemm(matrix(col, kkc / G), true, matrix(dy, F / G), false, matrix(dw, F / G, kkc / G),
           "conv2d filter gradient " + geometry_str(g) + " as col^T @ dy");
    c.kernels.back().gemm.k = (x.dim(0) * (g.oh * g.ow)).p;
    by_group(c.kernels.back().gemm, G, kkc, F, F, kkc / G, F / G, F / G);
  };
}

}  // namespace kiln
