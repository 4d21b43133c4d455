#pragma once
// Preprocessing as the seed experiments do it, vectorized with xsimd:
//  - per-image standardization, exactly TensorFlow's per_image_standardization:
//      y = (x - mean) / max(std, 1/sqrt(D))
//    with mean and population std over all D = H*W*C values of one image;
//    the result is flattened to f32 [N, D] (the MLP's input);
//  - /255 scaling to f32 in [0, 1], shape kept (the CNN's input);
//  - one-hot labels (f32) for MSE losses.
#include <cstdint>

#include "runtime/tensor.h"

namespace kiln::data {

// u8 [N, ...] -> f32 [N, D]. mean and std are computed exactly (integer sums)
// in double; each output is (float(x) - mean) / adjusted_std in f32.
Tensor per_image_standardize(const Tensor& images);

// u8 [N, ...] -> f32 of the same shape, x / 255.
Tensor scale_unit(const Tensor& images);

// Reshapes [N, ...] to [N, D] in place (no copy).
void flatten_rows(Tensor& t);

// i32 [N] labels in [0, classes) -> f32 [N, classes]; throws
// std::invalid_argument naming the first label out of range.
Tensor one_hot(const Tensor& labels, int64_t classes);

}  // namespace kiln::data
