#pragma once
// What the convolution and pooling converters share: an ONNX window
// (kernel, strides, dilations, pads) and the 3-D forms built from 2-D ops.
#include "compiler/frontend/onnx/convert.h"

namespace kiln::onnx {

struct Window {
  std::vector<int64_t> kernel, strides, dilations, pads;  // pads: [begins..., ends...]
};

// kernel_shape, strides, dilations, pads and auto_pad of a conv or pool over
// `spatial` (the input's spatial sizes; `kernel` from the filter, or empty to
// read kernel_shape); SAME_UPPER / SAME_LOWER become explicit pads.
Window window_of(NodeCtx& c, const Shape& spatial, std::vector<int64_t> kernel, bool has_dilations);
// A per-channel [C] vector shaped to broadcast over [N, C, spatial...].
std::string per_channel(NodeCtx& c, const std::string& v, int rank);

// [N, C, D, H, W] convolutions and pools (convert_volume.cpp): a sum (or max)
// over the depth taps of 2-D ops on the depth slices each tap reads.
void conv3d(NodeCtx& c);
void pool3d(NodeCtx& c, bool max);

}  // namespace kiln::onnx
