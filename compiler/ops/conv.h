#pragma once
// Geometry shared by conv2d's shape rule, reference kernel and lowering.
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/ir/graph.h"

namespace kiln {

struct ConvGeometry {
  int64_t n, h, w, c;       // input NHWC (n may be open)
  int64_t kh, kw, f;        // filter HWIO: [kh, kw, c, f]
  int64_t sh, sw;           // strides
  int64_t oh, ow;           // output spatial size
  int64_t pad_top, pad_left;
  int64_t dh = 1, dw = 1;   // dilations: taps dh rows, dw columns apart
  int64_t groups = 1;       // channel groups: output channel block j reads input channel block j only
  int64_t pad_bottom = 0, pad_right = 0;  // explicit or "same" padding (ceil_mode's overhang is not padding)
  int64_t span_h() const { return (kh - 1) * dh + 1; }  // rows one window covers
  int64_t span_w() const { return (kw - 1) * dw + 1; }
};

// padding: "valid" (none: OH = (H - span)/S + 1), "same" (OH = ceil(H/S), the
// padding split with the extra row/column at the bottom/right, as TF), or
// explicit [top, left, bottom, right]. Throws OpError naming the attribute.
ConvGeometry conv_geometry(int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                           const nlohmann::json& padding, int64_t dh = 1, int64_t dw = 1);
// The same from a node's attributes: strides (absent: default_strides),
// dilations (absent: 1) and padding.
ConvGeometry conv_geometry_of(int64_t h, int64_t w, int64_t kh, int64_t kw, const Attrs& attrs,
                              const std::vector<int64_t>& default_strides = {1, 1});
// A pooling window's geometry from pool, strides (default: the window),
// dilations, padding and ceil_mode (the last window may hang over the bottom
// and right edges, as long as it starts inside the input or its padding).
ConvGeometry pool_geometry_of(int64_t h, int64_t w, const Attrs& attrs);
// A channels-first layout (NCHW, NCW: filters [O, I, spatial...] as PyTorch
// and ONNX have them) is rewritten into the channels-last op (`channels_last`:
// "NHWC", "NWC") between transposes; kNoNode when the layout already is
// channels-last (the op applies as is). The spec of the 2-D ops' attribute:
struct AttrSpec;
AttrSpec layout_attr();
class GraphBuilder;
NodeId channels_first_as_last(GraphBuilder& b, const std::string& op, const std::vector<NodeId>& in, const Attrs& attrs,
                              const std::string& channels_last, bool has_filter);
// The attribute specs every convolution and pooling op shares.
struct AttrSpec;
std::vector<AttrSpec> window_attrs(bool dilations);

// Whether conv2d_backprop_input is computed as a convolution of dy (zero
// outside it) with the flipped filter: stride 1, padding within the window.
// Then a tap whose dy position lies outside dy still multiplies its weight by
// zero (0 x inf is NaN), as the forward's padding does.
inline bool input_gradient_as_convolution(const ConvGeometry& g) {
  return g.sh == 1 && g.sw == 1 && g.pad_top <= g.span_h() - 1 && g.pad_left <= g.span_w() - 1;
}

// Calls tap(ky, kx, iy, ix) for every window tap of output position (oy, ox)
// that lands inside the input, in row-major tap order; padding is skipped.
// The reference kernels of conv2d and of the pools walk windows with it.
template <class Tap>
void for_each_window_tap(const ConvGeometry& g, int64_t oy, int64_t ox, Tap tap) {
  for (int64_t ky = 0; ky < g.kh; ++ky) {
    int64_t iy = oy * g.sh + ky * g.dh - g.pad_top;
    if (iy < 0 || iy >= g.h) continue;
    for (int64_t kx = 0; kx < g.kw; ++kx) {
      int64_t ix = ox * g.sw + kx * g.dw - g.pad_left;
      if (ix < 0 || ix >= g.w) continue;
      tap(ky, kx, iy, ix);
    }
  }
}

}  // namespace kiln
