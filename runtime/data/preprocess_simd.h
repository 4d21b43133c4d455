#pragma once
// The vector kernel of preprocessing, compiled once per instruction set and
// picked at run time (xsimd::dispatch): the library is built for the baseline
// x86-64 (SSE2), and preprocess_avx2.cpp alone is compiled with -mavx2 so the
// same binary uses 8-float vectors where the CPU has them. Every arch gives
// bit-identical results (a subtraction and a division per lane, no FMA).
#include <xsimd/xsimd.hpp>

#include <cstddef>
#include <cstdint>

namespace kiln::data::simd {

// dst[i] = (float(src[i]) - sub) / scale over n values.
struct AffineU8ToF32 {
  template <class Arch>
  void operator()(Arch, const uint8_t* src, float* dst, size_t n, float sub, float scale) const;
};

#if defined(__x86_64__)
using PreprocessArchs = xsimd::arch_list<xsimd::avx2, xsimd::sse2>;
extern template void AffineU8ToF32::operator()<xsimd::avx2>(xsimd::avx2, const uint8_t*, float*, size_t, float, float) const;
extern template void AffineU8ToF32::operator()<xsimd::sse2>(xsimd::sse2, const uint8_t*, float*, size_t, float, float) const;
#else
using PreprocessArchs = xsimd::arch_list<xsimd::default_arch>;
extern template void AffineU8ToF32::operator()<xsimd::default_arch>(xsimd::default_arch, const uint8_t*, float*, size_t,
                                                                     float, float) const;
#endif

}  // namespace kiln::data::simd
