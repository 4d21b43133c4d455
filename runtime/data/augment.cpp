#include "runtime/data/augment.h"

#include <cstring>
#include <stdexcept>

#include "runtime/random/philox.h"

namespace kiln::data {

AugmentDraw augment_draw(const ImageAugmentation& a, int64_t epoch, int64_t row) {
  static constexpr uint64_t kStream = random::name_hash("kiln.augment");
  const random::Key key = random::stream_key(a.seed, kStream);
  const uint64_t at = static_cast<uint64_t>(row) * 3;
  AugmentDraw d;
  if (a.crop_padding >= 0) {
    const float span = static_cast<float>(2 * a.crop_padding + 1);
    d.dy = std::min<int64_t>(static_cast<int64_t>(random::uniform(key, static_cast<uint64_t>(epoch), at) * span), 2 * a.crop_padding);
    d.dx = std::min<int64_t>(static_cast<int64_t>(random::uniform(key, static_cast<uint64_t>(epoch), at + 1) * span), 2 * a.crop_padding);
  } else {
    d.dy = d.dx = 0;
  }
  d.flip = a.horizontal_flip && random::uniform(key, static_cast<uint64_t>(epoch), at + 2) < 0.5f;
  return d;
}

void augment_images(Tensor& images, std::span<const int64_t> rows, int64_t epoch, const ImageAugmentation& a) {
  if (!a.active()) return;
  if (images.dtype() != ElemType::f32 || images.rank() != 4)
    throw std::invalid_argument(std::string("augmentation needs f32 images [N, H, W, C], got ") + elem_type_name(images.dtype()) +
                                " " + shape_string(images.shape()));
  const int64_t n = images.dim(0), h = images.dim(1), w = images.dim(2), c = images.dim(3);
  if (static_cast<int64_t>(rows.size()) != n) throw std::invalid_argument("augmentation: one row index per image");
  if (!a.fill.empty() && static_cast<int64_t>(a.fill.size()) != c)
    throw std::invalid_argument("augmentation: " + std::to_string(a.fill.size()) + " fill values for " +
                                std::to_string(c) + " channels");
  const int64_t pad = std::max<int64_t>(a.crop_padding, 0), pixels = h * w * c;
  std::vector<float> source(static_cast<size_t>(pixels));
  float* data = images.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    const AugmentDraw d = augment_draw(a, epoch, rows[static_cast<size_t>(i)]);
    float* img = data + i * pixels;
    std::memcpy(source.data(), img, static_cast<size_t>(pixels) * sizeof(float));
    // Output (y, x) reads the padded image at (y + dy, x' + dx), x' mirrored
    // when flipped: torchvision crops first, then flips the crop.
    for (int64_t y = 0; y < h; ++y) {
      const int64_t sy = y + d.dy - pad;
      for (int64_t x = 0; x < w; ++x) {
        const int64_t sx = (d.flip ? w - 1 - x : x) + d.dx - pad;
        float* out = img + (y * w + x) * c;
        if (sy < 0 || sy >= h || sx < 0 || sx >= w) {
          for (int64_t k = 0; k < c; ++k) out[k] = a.fill.empty() ? 0.0f : a.fill[static_cast<size_t>(k)];
        } else {
          std::memcpy(out, source.data() + (sy * w + sx) * c, static_cast<size_t>(c) * sizeof(float));
        }
      }
    }
  }
}

}  // namespace kiln::data
