#pragma once
// Register tiles and cache blocking of the packed f32 GEMM
// (compiler/codegen/gemm_*.cpp), shared with lowering so the packing scratch
// is sized at compile time.
//
// The kernel splits its work into kGemmSlots groups handed to parallel_for;
// each contiguous chunk of groups a thread runs packs into its own slot of the
// scratch: a KC x NC block of op(B) in NR-column panels, then an MC x KC block
// of op(A) in MR-row panels. plan_gemm chooses MR, NR, KC, MC and NC per
// vector ISA and per shape; lowering does not know the ISA, so the scratch is
// sized for the largest plan any ISA may choose.
#include <algorithm>
#include <cstdint>
#include <string>

#include "compiler/ir/types.h"

namespace kiln::lower {

constexpr int64_t kGemmMatrixMaxKC = 320;  // the deepest packed block with op(A) a matrix (plan_gemm)
// With A read through convolution windows, depth blocks are up to this deep
// (KernelEmitter::gemm_plan): each block after the first reloads C, every
// row of a thread's range, long out of cache, and keeps the epilogue away
// from the block, while B's deeper panels still fit L2.
constexpr int64_t kGemmWindowsKC = 640;
constexpr int64_t kGemmMaxKC = std::max(kGemmMatrixMaxKC, kGemmWindowsKC);  // the deepest any plan uses
constexpr int64_t kGemmMaxMC = 96;   // the most rows of a packed A block
constexpr int64_t kGemmNC = 1024;    // columns of a packed B block (KC x NC floats: L2/L3)
constexpr int64_t kGemmMaxNR = 64;   // the widest micro-kernel (NR: 2 vectors of 32 lanes, or 4 of 16)
constexpr int64_t kGemmSlots = 8;    // parallel groups: at most 8 threads share one gemm
// How far ahead a B panel's first tile prefetches it: 2 KB. MobileNetV2 at
// batch 1 (kiln profile, 2 threads, AVX-512 host): the logits GEMV, 1280 x
// 1000, 0.164-0.168 -> 0.131-0.140 ms; features.18 (49 x 320 x 1280)
// 0.205-0.211 -> 0.179-0.192 ms.
constexpr int64_t kGemmPrefetchBFloats = 512;

// One gemm's register tile and cache blocks.
struct GemmPlan {
  int lanes = 8;       // floats per vector
  int mr = 6;          // rows of the register tile (accumulators: mr x nr_vecs vectors)
  int nr_vecs = 2;     // vectors per tile row: NR = nr_vecs * lanes columns
  int64_t kc = 256;    // the deepest block; K is cut into ceil(K / kc) blocks of equal depth
  int64_t mc = 72;     // rows of a packed A block (a multiple of mr, MC x KC floats in L2)
  int64_t nc = 1024;   // columns of a packed B block (a multiple of NR)
  // Floats ahead of the B panel the packed micro-kernel prefetches in a
  // panel's first tile of each MC block (0: none): that tile reads the panel
  // from L2 or memory (prepacked weights: a GEMV's stream them once), the
  // block's later tiles find it in L1. (Products that read A or A^T in place
  // never prefetch B.)
  int64_t prefetch_b = 0;
  int nr() const { return nr_vecs * lanes; }
  // MC for a tile of mr rows: the most whole tiles in 72 rows (at least one).
  static int64_t mc_for(int mr) { return std::max<int64_t>(mr, 72 / mr * mr); }
  // "6x32 tile (2 vectors of 16), KC <= 256, MC 72, NC 1024"
  std::string describe() const;
};

// The plan for op(A)[m x k] x op(B)[k x n] with vectors of `lanes` floats
// (4: SSE/NEON, 8: AVX/AVX2, 16: AVX-512, which also has twice the vector
// registers). m or k < 0: not known at compile time (they follow the batch).
GemmPlan plan_gemm(int lanes, int64_t m, int64_t n, int64_t k);

// Only f32 gemms take the packed path; others keep the Loop IR expansion.
inline bool gemm_packed(DType t) { return t == DType::f32; }

struct GemmSpec;
struct Program;
// A gemm (not a pack kernel) takes the packed path: f32 operands, N known
// when compiling, and its packing scratch sized for every plan. Lowering asks
// it before giving a gemm a pack kernel; codegen before emitting the driver.
bool gemm_takes_packed_path(const GemmSpec& g, const Program& p);

// The packed driver's parallel split (gemm_driver.cpp's region): a thread
// group takes a range of rows when M is large (from gemm_split_rows_from) or
// has at least as many MR-row panels as N has NR-column panels, else a range
// of columns. The driver emits the same rule as IR (M may follow the batch).
inline int64_t gemm_split_rows_from(const GemmPlan& p) { return 4 * p.mc; }
inline bool gemm_splits_rows(int64_t m, int64_t n, const GemmPlan& p) {
  return m >= gemm_split_rows_from(p) || (m + p.mr - 1) / p.mr >= (n + p.nr() - 1) / p.nr();
}

// Whether a packed gemm cuts K into kGemmSlots slices, one partial product
// each, added in order after them (gemm_driver.cpp): a plain product (not
// batched, not accumulating, op(B) packed per call) of few tiles, whose
// partials fit the scratch beside the packing slots; at run time, when K is
// at least kGemmCutKFrom (each slice 128 deep: shallower, the partials' extra
// passes over C cost more than the balance saves).
bool gemm_cuts_k(const GemmSpec& g, const GemmPlan& p);
constexpr int64_t kGemmCutKFrom = kGemmSlots * 128;

inline int64_t gemm_round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
// Columns of the packed B block for a gemm with n columns under plan p.
// The depth of each block when K is cut into ceil(K / kc) blocks of equal
// depth (the last may be shallower): 300 is one block of 300 under KC 320,
// 600 two of 300 under KC 256 (not 256 + 256 + 88). The driver's blocks and
// the panels a pack kernel lays out for it must agree.
inline int64_t gemm_depth_step(int64_t k, const GemmPlan& p) {
  const int64_t blocks = (k + p.kc - 1) / p.kc;
  return (k + blocks - 1) / blocks;
}
inline int64_t gemm_nc(int64_t n, const GemmPlan& p) { return std::min(gemm_round_up(n, p.nr()), p.nc); }
// Floats of one slot under plan p (+ kGemmMaxNR floats of padding: A packing
// may store one vector past its block).
inline int64_t gemm_slot_floats(int64_t n, const GemmPlan& p) { return p.kc * gemm_nc(n, p) + p.mc * p.kc + kGemmMaxNR; }
// Floats of op(B) [k x n] packed once (GemmSpec::packed_b), for any plan: depth
// block [pc, pc + kc) holds its ceil(n/NR) panels from pc * round_up(n, NR),
// panel q at q * NR * kc, so the panels of columns [jc, ..) at depth pc start
// at pc * round_up(n, NR) + jc * kc, laid out as pack_b lays one block.
inline int64_t gemm_packed_b_floats(int64_t n, int64_t k) { return k * gemm_round_up(n, kGemmMaxNR); }
// The op(B)s packed once for a gemm: one per product when a constant number
// of products each has its own B (product p's panels from p *
// gemm_packed_b_floats on), else one shared by all.
int64_t gemm_packed_products(const GemmSpec& g);
// Floats of scratch a packed gemm with n columns needs, for any plan: its
// blocks are up to kGemmWindowsKC deep with A read through windows, else
// kGemmMatrixMaxKC.
inline int64_t gemm_scratch_floats(int64_t n, bool windows_a = false) {
  const int64_t kc = windows_a ? kGemmWindowsKC : kGemmMatrixMaxKC;
  return kGemmSlots * (kc * std::min(gemm_round_up(n, kGemmMaxNR), kGemmNC) + kGemmMaxMC * kc + kGemmMaxNR);
}

}  // namespace kiln::lower
