#pragma once
// Training-time image augmentation, per sample, as torchvision's
// RandomCrop(size, padding) + RandomHorizontalFlip(0.5) do it: a crop of the
// original size from the image padded by `padding` on every side, then a
// mirror image with probability 1/2. Images are NHWC f32; the padding takes
// `fill[c]` (what a zero pixel became after normalization, so augmenting
// normalized images equals normalizing augmented ones).
//
// Every choice is a Philox draw keyed by (seed, epoch, row of the data set):
// the same images on any thread count, in any batch order, after a resume.
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/tensor.h"

namespace kiln::data {

struct ImageAugmentation {
  int64_t crop_padding = -1;  // -1: no random crop
  bool horizontal_flip = false;
  std::vector<float> fill;    // per channel; empty: 0
  uint64_t seed = 1;
  bool active() const { return crop_padding >= 0 || horizontal_flip; }
};

// The offsets (in [0, 2 * padding]) and flip drawn for one sample.
struct AugmentDraw {
  int64_t dy = 0, dx = 0;
  bool flip = false;
};
AugmentDraw augment_draw(const ImageAugmentation& a, int64_t epoch, int64_t row);

// Rewrites `images` (f32 [b, H, W, C]) in place; rows[i] is image i's row in
// the data set. Throws std::invalid_argument for another layout.
void augment_images(Tensor& images, std::span<const int64_t> rows, int64_t epoch, const ImageAugmentation& a);

}  // namespace kiln::data
