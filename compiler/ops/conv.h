#pragma once
// Geometry shared by conv2d's shape rule, reference kernel and lowering.
#include <cstdint>
#include <string>

namespace kiln {

struct ConvGeometry {
  int64_t n, h, w, c;       // input NHWC (n may be open)
  int64_t kh, kw, f;        // filter HWIO: [kh, kw, c, f]
  int64_t sh, sw;           // strides
  int64_t oh, ow;           // output spatial size
  int64_t pad_top, pad_left;
};

// TF semantics: "valid" -> ceil((H-KH+1)/S); "same" -> ceil(H/S), padding split
// with the extra row/column at the bottom/right.
ConvGeometry conv_geometry(int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                           const std::string& padding);

}  // namespace kiln
