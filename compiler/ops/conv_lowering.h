#pragma once
// Loop-IR helpers shared by the conv and pool lowerings, and the conv family's
// lowering (conv_lowering.cpp).
#include <functional>

#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/conv.h"

namespace kiln {

// Loops over the window of output position (oh, ow), clipped to the input so
// padding contributes nothing: body(ih, iw, kh, kw).
void window_loops(lower::KernelBuilder& k, const ConvGeometry& g, lower::E oh, lower::E ow,
                  const std::function<void(lower::E, lower::E, lower::E, lower::E)>& body);

// Windows of up to 7 x 7 taps are unrolled: each tap's pixel is found before
// the channel loop, whose one expression per channel vector takes every tap
// (depthwise convolution, max pooling); larger windows loop over the taps.
constexpr int64_t kMaxUnrolledTaps = 49;

// The pixel (ih, iw) of image n, clamped into the image when outside it.
struct Pixel {
  lower::E inside, at;  // the tap is inside the image; the (clamped) pixel's offset of channel 0
};
Pixel pixel(const lower::BufRef& x, const ConvGeometry& g, lower::E n, lower::E ih, lower::E iw);

// A loop over (image, output row) pairs, parallel when `parallel`, so one
// image (inference at batch 1) still splits: body(n_oh, n, oh).
void image_rows(lower::KernelBuilder& k, lower::E images, int64_t rows,
                const std::function<void(lower::E, lower::E, lower::E)>& body, bool parallel);

// Depthwise: one input channel per group and one output channel per input
// (conv_depthwise.cpp lowers these as loops over the channels, not GEMMs).
bool is_depthwise(const ConvGeometry& g, int64_t in_channels, int64_t out_channels);
void lower_depthwise_conv(lower::LowerCtx& c, const ConvGeometry& g);
void lower_depthwise_input_gradient(lower::LowerCtx& c, const ConvGeometry& g);
void lower_depthwise_filter_gradient(lower::LowerCtx& c, const ConvGeometry& g);

// 3x3 stride-1 convolutions of f32 with enough channels and enough 4x4
// output tiles, as Winograd F(4x4, 3x3) (conv_winograd.cpp).
// KILN_NO_WINOGRAD=1 keeps the direct GEMM, for comparisons.
bool winograd_applies(const lower::LowerCtx& c, const ConvGeometry& g, int64_t in_channels, int64_t out_channels);
// y = the convolution of x (NHWC) with w (HWIO) under geometry g.
void lower_winograd_conv(lower::LowerCtx& c, const ConvGeometry& g, const lower::BufRef& x, const lower::BufRef& w,
                         const lower::BufRef& y);

class OpRegistry;
// Sets the lowering of conv2d and its two gradient ops.
void add_conv_lowering(OpRegistry& r);

}  // namespace kiln
