#include "runtime/data/preprocess.h"

#include "runtime/data/preprocess_simd_impl.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace kiln::data {

// The baseline instantiations (this file is compiled for the baseline ISA).
#if defined(__x86_64__)
template void simd::AffineU8ToF32::operator()<xsimd::sse2>(xsimd::sse2, const uint8_t*, float*, size_t, float, float) const;
#else
template void simd::AffineU8ToF32::operator()<xsimd::default_arch>(xsimd::default_arch, const uint8_t*, float*, size_t,
                                                                   float, float) const;
#endif

namespace {

// Row length D of a [N, ...] tensor.
int64_t row_size(const Tensor& t, const char* what) {
  if (t.rank() < 1) throw std::invalid_argument(std::string(what) + ": needs a [N, ...] tensor, got a scalar");
  return t.dim(0) == 0 ? 0 : t.numel() / t.dim(0);
}

void require_u8(const Tensor& t, const char* what) {
  if (t.dtype() != ElemType::u8) throw std::invalid_argument(std::string(what) + ": needs u8 images, got " + elem_type_name(t.dtype()));
}

// dst[i] = (float(src[i]) - sub) / scale, with the widest vectors this CPU has.
void affine_u8_to_f32(const uint8_t* src, float* dst, size_t n, float sub, float scale) {
  static auto kernel = xsimd::dispatch<simd::PreprocessArchs>(simd::AffineU8ToF32{});
  kernel(src, dst, n, sub, scale);
}

}  // namespace

Tensor per_image_standardize(const Tensor& images) {
  require_u8(images, "per_image_standardize");
  const int64_t d = row_size(images, "per_image_standardize");
  const int64_t n = images.rank() ? images.dim(0) : 0;
  Tensor out(ElemType::f32, {n, d});
  const uint8_t* src = images.data<uint8_t>();
  float* dst = out.data<float>();
  const double min_std = 1.0 / std::sqrt(static_cast<double>(d));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* x = src + i * d;
    // Integer sums are exact, so mean and variance carry no summation error.
    uint64_t sum = 0, sumsq = 0;
    for (int64_t j = 0; j < d; ++j) {
      sum += x[j];
      sumsq += uint32_t{x[j]} * x[j];
    }
    const double mean = static_cast<double>(sum) / static_cast<double>(d);
    const __int128 num = static_cast<__int128>(d) * sumsq - static_cast<__int128>(sum) * sum;  // D^2 * variance
    const double var = static_cast<double>(num) / (static_cast<double>(d) * static_cast<double>(d));
    const double adjusted = std::max(std::sqrt(var), min_std);
    affine_u8_to_f32(x, dst + i * d, static_cast<size_t>(d), static_cast<float>(mean), static_cast<float>(adjusted));
  }
  return out;
}

Tensor scale_unit(const Tensor& images) {
  require_u8(images, "scale_unit");
  Tensor out(ElemType::f32, images.shape());
  affine_u8_to_f32(images.data<uint8_t>(), out.data<float>(), static_cast<size_t>(images.numel()), 0.0f, 255.0f);
  return out;
}

void flatten_rows(Tensor& t) {
  const int64_t d = row_size(t, "flatten_rows");
  t.reshape({t.dim(0), d});
}

Tensor one_hot(const Tensor& labels, int64_t classes) {
  if (labels.dtype() != ElemType::i32 || labels.rank() != 1)
    throw std::invalid_argument("one_hot: needs i32 labels [N], got " + std::string(elem_type_name(labels.dtype())) + " " +
                                shape_string(labels.shape()));
  const int64_t n = labels.dim(0);
  Tensor out(ElemType::f32, {n, classes});  // zero-filled
  const int32_t* l = labels.data<int32_t>();
  float* o = out.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    if (l[i] < 0 || l[i] >= classes)
      throw std::invalid_argument("one_hot: label " + std::to_string(l[i]) + " of item " + std::to_string(i) +
                                  " is outside [0, " + std::to_string(classes) + ")");
    o[i * classes + l[i]] = 1.0f;
  }
  return out;
}

}  // namespace kiln::data
