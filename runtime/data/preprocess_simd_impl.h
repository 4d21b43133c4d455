#pragma once
// The definition of the dispatched kernel; included only by the per-arch
// translation units that instantiate it (see preprocess_simd.h).
#include "runtime/data/preprocess_simd.h"

namespace kiln::data::simd {

template <class Arch>
void AffineU8ToF32::operator()(Arch, const uint8_t* src, float* dst, size_t n, float sub, float scale) const {
  using Batch = xsimd::batch<float, Arch>;
  constexpr size_t kLanes = Batch::size;
  const Batch vsub(sub), vscale(scale);
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    Batch x = Batch::load_unaligned(src + i);  // widening load u8 -> f32
    ((x - vsub) / vscale).store_unaligned(dst + i);
  }
  for (; i < n; ++i) dst[i] = (static_cast<float>(src[i]) - sub) / scale;
}

}  // namespace kiln::data::simd
