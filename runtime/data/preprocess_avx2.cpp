// Compiled with -mavx2 (runtime/CMakeLists.txt): the AVX2 instantiation of
// the preprocessing kernel, reached only through xsimd::dispatch on CPUs
// that have AVX2. Keep this file to instantiations: anything else compiled
// here could carry AVX2 instructions into code the baseline path runs.
#if defined(__x86_64__)
#include "runtime/data/preprocess_simd_impl.h"

namespace kiln::data::simd {
template void AffineU8ToF32::operator()<xsimd::avx2>(xsimd::avx2, const uint8_t*, float*, size_t, float, float) const;
}  // namespace kiln::data::simd
#endif
