// Depthwise convolutions (one input channel per group, one output channel per
// input: MobileNet's) as loop nests over channels, not GEMMs: as a grouped
// GEMM each channel is a product one column wide with K = KH*KW, which ran
// at under 1 GFLOP/s (mobilenet_small, AVX2 host). Here the innermost loop
// runs over the channels, contiguous in NHWC x, y and the filter, so each tap
// is one vector multiply-add per lanes channels.
//
// Padding is zeros that take part in the products, as in the GEMM forms (the
// reference kernels say which: 0 x inf is NaN there too): the taps are never
// clipped, an outside tap reads zero.
#include "compiler/ops/conv_lowering.h"

namespace kiln {

using namespace lower;

bool is_depthwise(const ConvGeometry& g, int64_t in_channels, int64_t out_channels) {
  return g.groups > 1 && g.groups == in_channels && in_channels == out_channels;
}

namespace {

// Batch chunks of the filter gradient: each sums its images into a partial
// filter of its own, then the partials are added in chunk order, so the
// result does not depend on the thread count.
constexpr int64_t kFilterChunks = 8;

}  // namespace

// Stride 1 across (any stride down): interior pixels of an output row
// (every tap's column inside the image) are summed kPixelBlock at a time.
// One pixel's taps form a chain of dependent adds (the same terms in the
// same order as the reference), so a block's pixels are independent chains
// in one channel loop, sharing the filter's taps in registers; their taps
// are a few row starts plus constant offsets, where a border pixel needs a
// clamped address and a mask per tap. The row's epilogue then runs on the
// whole output row. Strided across, an output row reads twice the input
// columns, which pushes the row out of L1 before that epilogue
// (MobileNetV2's first stride-2 layer, 112 x 112 x 96 in, was 8% slower),
// so each pixel is summed, and finished, on its own.
constexpr int64_t kPixelBlock = 4;

// Output columns [first, end) whose taps all lie inside the image's columns.
static std::pair<int64_t, int64_t> interior_columns(const ConvGeometry& g) {
  const int64_t first = g.pad_left <= 0 ? 0 : std::min(g.ow, (g.pad_left + g.sw - 1) / g.sw);
  const int64_t last_col = g.w - g.span_w() + g.pad_left;  // the last window start inside
  const int64_t end = last_col < 0 ? 0 : std::min(g.ow, last_col / g.sw + 1);
  return {first, std::max(first, end)};
}

namespace {

struct DepthwiseTaps {
  const ConvGeometry& g;
  const BufRef &x, &w, &y;
  int64_t C;

  // Output pixel (n, oh, ow): each tap's pixel (where it lies, whether
  // inside) is known before the channel loop, which sums the taps in a
  // register and stores each output once.
  void one_pixel(KernelBuilder& k, E n, E oh, E ow) const {
    std::vector<std::pair<E, E>> taps;  // (inside, pixel offset)
    for (int64_t kh = 0; kh < g.kh; ++kh)
      for (int64_t kw = 0; kw < g.kw; ++kw) {
        Pixel p = pixel(x, g, n, oh * g.sh + (kh * g.dh - g.pad_top), ow * g.sw + (kw * g.dw - g.pad_left));
        taps.emplace_back(k.let("inside", p.inside), k.let("at", p.at));
      }
    E row = y.offset({n, oh, ow, 0});
    k.loop("c", 0, C, [&](E ch) {
      E sum = lit(0, y.scalar());
      for (size_t t = 0; t < taps.size(); ++t) {
        E v = select(taps[t].first, k.load(x, taps[t].second + ch), lit(0, x.scalar()));
        sum = sum + v * k.load(w, E(static_cast<int64_t>(t) * C) + ch);
      }
      k.store(y, row + ch, sum);
    });
  }

  // `block` interior pixels from (n, oh, ow0): per filter row, whether the
  // image row is inside and where the first window starts in it.
  void interior_block(KernelBuilder& k, E n, E oh, E ow0, int64_t block) const {
    std::vector<std::pair<E, E>> rows;  // per filter row: (inside, offset of the block's first tap)
    for (int64_t kh = 0; kh < g.kh; ++kh) {
      Pixel p = pixel(x, g, n, oh * g.sh + (kh * g.dh - g.pad_top), ow0 * g.sw - g.pad_left);
      rows.emplace_back(k.let("row_inside", p.inside), k.let("row_at", p.at));
    }
    E out = y.offset({n, oh, ow0, 0});
    k.loop("c", 0, C, [&](E ch) {
      std::vector<E> taps;  // the filter's taps of these channels, loaded once for the block
      for (int64_t t = 0; t < g.kh * g.kw; ++t) taps.push_back(k.let("tap", k.load(w, E(t * C) + ch)));
      std::vector<E> sums;
      for (int64_t j = 0; j < block; ++j) {
        E sum = lit(0, y.scalar());
        for (int64_t kh = 0; kh < g.kh; ++kh)
          for (int64_t kw = 0; kw < g.kw; ++kw) {
            E at = rows[kh].second + E((j * g.sw + kw * g.dw) * C) + ch;
            sum = sum + select(rows[kh].first, k.load(x, at), lit(0, x.scalar())) * taps[kh * g.kw + kw];
          }
        sums.push_back(k.let("sum", sum));
      }
      for (int64_t j = 0; j < block; ++j) k.store(y, out + E(j * C) + ch, sums[j]);
    });
  }
};

}  // namespace

void lower_depthwise_conv(LowerCtx& c, const ConvGeometry& g) {
  const BufRef &x = c.in[0], &w = c.in[1], &y = c.out;
  const int64_t C = x.shape[3];
  auto k = c.kernel("depthwise conv2d " + std::to_string(g.kh) + "x" + std::to_string(g.kw) + " over channels");
  const bool parallel = numel(y.shape, c.max_batch()) >= kParallelMinElements;
  const Scalar f = y.scalar();
  const DepthwiseTaps taps{g, x, w, y, C};
  const std::pair<int64_t, int64_t> interior = interior_columns(g);
  const int64_t first = interior.first, end = interior.second;  // (no structured binding: lambdas capture first)
  const int64_t blocks = g.sw == 1 ? (end - first) / kPixelBlock : 0;
  if (g.kh * g.kw <= kMaxUnrolledTaps && blocks > 0) {
    image_rows(k, y.dim(0), g.oh, [&](E n_oh, E n, E oh) {
      k.loop("ow", 0, first, [&](E ow) { taps.one_pixel(k, n, oh, ow); });
      k.loop("owb", 0, blocks, [&](E owb) {
        taps.interior_block(k, n, oh, k.let("ow0", E(first) + owb * E(kPixelBlock)), kPixelBlock);
      });
      k.loop("ow", first + blocks * kPixelBlock, g.ow, [&](E ow) { taps.one_pixel(k, n, oh, ow); });
      // The row's pixels are summed: a bias and a clip after (batch norm
      // folded in inference) run here, on the row in cache (row_epilogue.h).
      k.loop("px", 0, g.ow, [&](E px) { k.row_final(y, n_oh * E(g.ow) + px, C); });
    }, parallel);
    return;
  }
  if (g.kh * g.kw <= kMaxUnrolledTaps) {
    image_rows(k, y.dim(0), g.oh, [&](E n_oh, E n, E oh) {
      k.loop("ow", 0, g.ow, [&](E ow) {
        taps.one_pixel(k, n, oh, ow);
        k.row_final(y, n_oh * E(g.ow) + ow, C);  // the pixel's epilogue, on it in L1
      });
    }, parallel);
    return;
  }
  image_rows(k, y.dim(0), g.oh, [&](E n_oh, E n, E oh) {
    k.loop("ow", 0, g.ow, [&](E ow) {
      E row = y.offset({n, oh, ow, 0});
      k.loop("c", 0, C, [&](E ch) { k.store(y, row + ch, lit(0, f)); });
      k.loop("kh", 0, g.kh, [&](E kh) {
        k.loop("kw", 0, g.kw, [&](E kw) {
          Pixel p = pixel(x, g, n, oh * g.sh - g.pad_top + kh * g.dh, ow * g.sw - g.pad_left + kw * g.dw);
          E inside = k.let("inside", p.inside);
          E wrow = (kh * g.kw + kw) * C;
          k.loop("c", 0, C, [&](E ch) {
            E v = select(inside, k.load(x, p.at + ch), lit(0, f));
            k.store(y, row + ch, k.load(y, row + ch) + v * k.load(w, wrow + ch));
          });
        });
      });
      // The pixel's channels are summed: a bias and a clip after run here,
      // on the row in L1 (row_epilogue.h).
      k.row_final(y, n_oh * E(g.ow) + ow, C);
    });
  }, parallel);
}

void lower_depthwise_input_gradient(LowerCtx& c, const ConvGeometry& g) {
  const BufRef &dy = c.in[0], &w = c.in[1], &dx = c.out;
  const int64_t C = dx.shape[3];
  // dx[ih] sums dy[oh] w[k] over the taps with oh * s = ih + pad - k * d. At
  // stride 1 (input_gradient_as_convolution) the taps whose oh lies outside
  // dy take part with a zero, as in the GEMM form's convolution of dy; others
  // (strided) add nothing, as col2im adds nothing.
  const bool as_convolution = input_gradient_as_convolution(g);
  auto k = c.kernel("depthwise conv2d input gradient " + std::to_string(g.kh) + "x" + std::to_string(g.kw));
  k.loop("n_ih", 0, dx.dim(0) * E(g.h), [&](E n_ih) {  // (image, input row) pairs, as the forward
    E n = k.let("n", n_ih / E(g.h)), ih = k.let("ih", n_ih % E(g.h));
    k.loop("iw", 0, g.w, [&](E iw) {
      E row = dx.offset({n, ih, iw, 0});
      k.loop("c", 0, C, [&](E ch) { k.store(dx, row + ch, lit(0, dx.scalar())); });
      k.loop("kh", 0, g.kh, [&](E kh) {
        k.loop("kw", 0, g.kw, [&](E kw) {
          E sy = ih + g.pad_top - kh * g.dh, sx = iw + g.pad_left - kw * g.dw;
          E oh = sy / E(g.sh), ow = sx / E(g.sw);
          E valid = (sy >= 0) && (sx >= 0) && (oh < g.oh) && (ow < g.ow);
          if (g.sh > 1) valid = valid && (sy % E(g.sh) == 0);
          if (g.sw > 1) valid = valid && (sx % E(g.sw) == 0);
          E ok = k.let("valid", valid);
          E at = dy.offset({n, max(E(0), min(oh, E(g.oh - 1))), max(E(0), min(ow, E(g.ow - 1))), 0});
          E wrow = (kh * g.kw + kw) * C;
          k.loop("c", 0, C, [&](E ch) {
            E zero = lit(0, dx.scalar());
            E term = as_convolution ? select(ok, k.load(dy, at + ch), zero) * k.load(w, wrow + ch)
                                    : select(ok, k.load(dy, at + ch) * k.load(w, wrow + ch), zero);
            k.store(dx, row + ch, k.load(dx, row + ch) + term);
          });
        });
      });
    });
  }, numel(dx.shape, c.max_batch()) >= kParallelMinElements);
}

void lower_depthwise_filter_gradient(LowerCtx& c, const ConvGeometry& g) {
  const BufRef &x = c.in[0], &dy = c.in[1], &dw = c.out;
  const int64_t C = x.shape[3], taps = g.kh * g.kw;
  Shape ps{kFilterChunks, taps * C};
  BufRef partial{c.scratch("partial filter gradients " + c.node.name, dw.dtype, ps), dw.dtype, ps};
  const std::string what = "depthwise conv2d filter gradient " + std::to_string(g.kh) + "x" + std::to_string(g.kw);
  auto k = c.kernel(what + ": each batch chunk's sum");
  E N = x.dim(0);
  k.loop("chunk", 0, kFilterChunks, [&](E chunk) {
    E mine = chunk * (taps * C);
    k.loop("i", 0, taps * C, [&](E i) { k.store(partial, mine + i, lit(0, dw.scalar())); });
    k.loop("n", chunk * N / E(kFilterChunks), (chunk + 1) * N / E(kFilterChunks), [&](E n) {
      k.loop("oh", 0, g.oh, [&](E oh) {
        k.loop("ow", 0, g.ow, [&](E ow) {
          E grad = dy.offset({n, oh, ow, 0});
          k.loop("kh", 0, g.kh, [&](E kh) {
            k.loop("kw", 0, g.kw, [&](E kw) {
              Pixel p = pixel(x, g, n, oh * g.sh - g.pad_top + kh * g.dh, ow * g.sw - g.pad_left + kw * g.dw);
              E inside = k.let("inside", p.inside);
              E to = mine + (kh * g.kw + kw) * C;
              k.loop("c", 0, C, [&](E ch) {
                E v = select(inside, k.load(x, p.at + ch), lit(0, x.scalar()));
                k.store(partial, to + ch, k.load(partial, to + ch) + v * k.load(dy, grad + ch));
              });
            });
          });
        });
      });
    });
  }, true);
  auto sum = c.kernel(what + ": the chunks added in order");
  sum.loop("i", 0, taps * C, [&](E i) {
    E total = sum.let("total", sum.load(partial, i));
    for (int64_t ch = 1; ch < kFilterChunks; ++ch) total = total + sum.load(partial, E(ch * taps * C) + i);
    sum.store(dw, i, total);
  });
}

}  // namespace kiln
