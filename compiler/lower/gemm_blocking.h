#pragma once
// Cache blocking of the packed f32 GEMM (compiler/codegen/gemm_*.cpp), shared
// with lowering so the packing scratch is sized at compile time.
//
// The kernel splits its work into kGemmSlots groups handed to parallel_for;
// each contiguous chunk of groups a thread runs packs into its own slot of the
// scratch: a KC x NC block of op(B) in NR-column panels, then an MC x KC block
// of op(A) in MR-row panels.
#include <algorithm>
#include <cstdint>

#include "compiler/ir/types.h"

namespace kiln::lower {

constexpr int64_t kGemmMR = 6;       // rows of the micro-kernel (accumulators: MR x NR/lanes vectors)
constexpr int64_t kGemmKC = 256;     // depth of a packed block: a KC x NR panel of B stays in L1
constexpr int64_t kGemmMC = 72;      // rows of a packed A block (MC x KC = 72 KiB, in L2)
constexpr int64_t kGemmNC = 1024;    // columns of a packed B block (KC x NC = 1 MiB, L2/L3)
constexpr int64_t kGemmMaxNR = 64;   // the widest micro-kernel (NR = 2 vectors, up to 32 lanes)
constexpr int64_t kGemmSlots = 8;    // parallel groups: at most 8 threads share one gemm

// Only f32 gemms take the packed path; others keep the Loop IR expansion.
inline bool gemm_packed(DType t) { return t == DType::f32; }

inline int64_t gemm_round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
// Columns of the packed B block for a gemm with n columns and nr-column panels (nr divides kGemmMaxNR).
inline int64_t gemm_nc(int64_t n, int64_t nr) { return std::min(gemm_round_up(n, nr), kGemmNC); }
// (+ kGemmMaxNR floats of padding: A packing may store one vector past its block.)
inline int64_t gemm_slot_floats(int64_t n, int64_t nr) {
  return kGemmKC * gemm_nc(n, nr) + kGemmMC * kGemmKC + kGemmMaxNR;
}
// Floats of scratch a packed gemm with n columns needs, for any micro-kernel width.
inline int64_t gemm_scratch_floats(int64_t n) { return kGemmSlots * gemm_slot_floats(n, kGemmMaxNR); }

}  // namespace kiln::lower
