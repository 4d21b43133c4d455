#pragma once
// Internal to codegen: the pieces of the packed f32 GEMM, built directly as
// LLVM IR (register blocking needs vector accumulators held in SSA values,
// which Loop IR cannot express).
//
//   gemm_microkernel.cpp  C[MR x NR] (+)= A panel (or A^T in place) x B panel, MR x NR/lanes vector FMAs
//   gemm_direct_windows.cpp  the same tile with A's rows or B's panels read through windows, in place
//   gemm_pack.cpp         op(A) -> MR-row panels, op(B) -> NR-column panels (zero padded)
//   gemm_operands.cpp     the plan, and which operand is packed or read in place
//   gemm_driver.cpp       the kernel: blocking KC/MC/NC, groups over parallel_for
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Module.h>

#include <functional>
#include <string>
#include <vector>

#include "compiler/lower/gemm_blocking.h"
#include "compiler/lower/loop_ir.h"

namespace kiln::codegen {

// The helpers read the plan's register tile: lanes, mr, nr_vecs.
using GemmShape = lower::GemmPlan;

// for (i = lo; i < hi; i += step) body(i), with i an i64 phi, which LLVM
// neither unrolls nor vectorizes: the GEMM's block, packing, edge and
// epilogue loops are shaped by hand, and unrolled they measured no faster
// (kiln_bench_gemm) at 40% more code. (The micro-kernel's K loop is not a
// gemm_for: it asks for an unroll count.) Leaves the builder after the loop.
void gemm_for(llvm::IRBuilder<>& b, llvm::Value* lo, llvm::Value* hi, llvm::Value* step, const std::string& name,
              const std::function<void(llvm::Value*)>& body);
inline void gemm_for(llvm::IRBuilder<>& b, llvm::Value* lo, llvm::Value* hi, int64_t step, const std::string& name,
                     const std::function<void(llvm::Value*)>& body) {
  gemm_for(b, lo, hi, b.getInt64(static_cast<uint64_t>(step)), name, body);
}
// gemm_for that also walks float pointers: walker w starts at start and moves
// stride floats per iteration; body(i, pointers). A hot loop's addresses then
// cost one add each, without LLVM's loop strength reduction (which kiln's
// codegen leaves out: host.cpp).
struct GemmWalker {
  llvm::Value* start;
  llvm::Value* stride;  // i64, in floats
};
void gemm_for_walk(llvm::IRBuilder<>& b, llvm::Value* lo, llvm::Value* hi, int64_t step, const std::string& name,
                   const std::vector<GemmWalker>& walkers,
                   const std::function<void(llvm::Value*, const std::vector<llvm::Value*>&)>& body);
// Loop metadata on a loop's back edge (a loop emitted by kiln): how far LLVM
// may unroll it and whether it may vectorize it. kiln blocks and vectorizes
// its loops itself;
// O3 would also runtime-unroll each by up to 8 (and unswitch the copies):
// twice the machine code and compile time, for no measured speed. Loops whose
// trip count is a constant may still unroll fully (ConstantTripsOnly): a
// 3 x 3 window or 16 channels do gain from that.
enum class Unroll { Never, ConstantTripsOnly };
void set_loop_hints(llvm::BranchInst* latch, Unroll unroll, bool vectorize);
// Asks LLVM to unroll the loop of this back edge `count` times.
void set_unroll_count(llvm::BranchInst* latch, int count);
// The i64 vector <0, 1, ..., lanes - 1>.
inline llvm::Value* lane_indices(llvm::IRBuilder<>& b, unsigned lanes) {
  std::vector<llvm::Constant*> lane;
  for (unsigned t = 0; t < lanes; ++t) lane.push_back(b.getInt64(t));
  return llvm::ConstantVector::get(lane);
}
// if (cond) then_() else else_(); either may be empty.
void gemm_if(llvm::IRBuilder<>& b, llvm::Value* cond, const std::function<void()>& then_,
             const std::function<void()>& else_ = {});

// Where a GEMM helper (micro-kernel, packers) is defined. Every gemm of a
// program calls the same few: the JIT compiles them once, in a module of
// their own (Exported there, Imported by the kernel modules); a module that
// holds the whole program (AOT, `kiln ir`) keeps them Internal.
enum class HelperPlacement { Internal, Exported, Imported };

// A kernel's own micro-kernel whose tile goes through the gemm's epilogue in
// registers instead of to C (gemm_driver.cpp): named with `suffix`, taking
// `extra` parameters after the helper's own, and `store` emits, at the end of
// the K loop (builder b in f), what becomes of the sums (MR x nr_vecs vectors,
// row-major) of the m_eff x n_eff tile.
struct GemmTileEpilogue {
  std::string suffix;
  std::vector<llvm::Type*> extra;
  std::function<void(llvm::IRBuilder<>& b, llvm::Function* f, const std::vector<llvm::Value*>& sums,
                     llvm::Value* m_eff, llvm::Value* n_eff)>
      store;
};

struct GemmHelperOptions {
  HelperPlacement placement = HelperPlacement::Internal;
  std::function<void(llvm::Function*)> attrs;  // target attributes, added to a definition
  const GemmTileEpilogue* tile_epilogue = nullptr;  // (gemm_microkernel and gemm_microkernel_windows only)
};

// void ukr(i64 kc, ptr a, ptr b, ptr c, i64 ldc, i64 m, i64 n, i1 load_c):
// C[i*ldc + j] = (load_c ? C[i*ldc + j] : 0) + sum_k a[k*MR + i] * b[k*NR + j]
// for i < m <= MR, j < n <= NR, the sum over k in order with one FMA per step.
// Created once per module and plan: with s.prefetch_b, a variant of its own
// (`_pfb<floats>`) that prefetches B that far ahead.
llvm::Function* gemm_microkernel(llvm::Module& m, const GemmShape& s, const GemmHelperOptions& o);

// void ukr_at(i64 kc, ptr a, i64 lda, ptr b, ptr c, i64 ldc, i64 m, i64 n, i1 load_c):
// gemm_microkernel's tile with op(A) = A^T read in place, row i at depth k
// a[k*lda + i], not from a packed panel: the same FMAs in the same order.
llvm::Function* gemm_microkernel_a_t(llvm::Module& m, const GemmShape& s, const GemmHelperOptions& o);

// The micro-kernel's tile of C: its lines are asked for (prefetched) before
// the K loop, so a tall C (rows 4 KiB apart, which hardware prefetchers do not
// follow) arrives while the FMAs run; after it, the accumulators (MR x
// nr_vecs vectors, row-major) are stored, added to C's when load_c, the
// m_eff x n_eff corner only on an edge tile.
void gemm_prefetch_c(llvm::IRBuilder<>& b, llvm::Module& m, const GemmShape& s, llvm::Value* cp, llvm::Value* ldc);
void gemm_store_tile(llvm::IRBuilder<>& b, const GemmShape& s, const std::vector<llvm::Value*>& acc, llvm::Value* cp,
                     llvm::Value* ldc, llvm::Value* m_eff, llvm::Value* n_eff, llvm::Value* load_c);
// void ukr_win(ptr image, i64 row0, i64 m_eff, i64 k0, i64 kc, ptr b, ptr c, i64 ldc, i64 n_eff, i1 load_c)
// (gemm_direct_windows.cpp): gemm_microkernel's tile with A's rows row0 ..
// row0 + m_eff read straight from the image through the windows of w over
// depths [k0, k0 + kc), not from a packed panel. The same FMAs in the same
// order: the same bits as packing A then gemm_microkernel.
llvm::Function* gemm_microkernel_windows(llvm::Module& m, const GemmShape& s, const lower::GemmWindows& w,
                                         const GemmHelperOptions& o);
// void ukr_winb(ptr image, ptr a, i64 lda, i64 k0, i64 kc, i64 col0, ptr c, i64 ldc, i64 m_eff, i64 n_eff, i1 load_c)
// (gemm_direct_windows.cpp): gemm_microkernel's tile with op(B)'s NR columns
// col0 .. (inside one tap: NR divides the channels per group) read straight
// from the image through the windows of w over the depths (output positions)
// [k0, k0 + kc), and op(A)'s rows from a (at its first row; trans_a: A[k *
// lda + i]). Positions whose tap is in the padding are skipped (they add
// zeros), so the bits are those of the packed path's.
llvm::Function* gemm_microkernel_windows_b(llvm::Module& m, const GemmShape& s, const lower::GemmWindows& w,
                                           bool trans_a, const GemmHelperOptions& o);

// void pack_a(ptr A, i64 lda, i64 i0, i64 mc, i64 k0, i64 kc, ptr dst):
// op(A)[i0 .. i0+mc, k0 .. k0+kc] into ceil(mc/MR) panels dst[p*MR*kc + k*MR + r], rows past mc zero.
llvm::Function* gemm_pack_a(llvm::Module& m, const GemmShape& s, bool trans, const GemmHelperOptions& o);
// Transposes a lanes x lanes block held as `lanes` row vectors: log2(lanes)
// rounds of interleaving row i with row i + lanes/2 (gemm_pack.cpp).
std::vector<llvm::Value*> transpose_lanes(llvm::IRBuilder<>& b, std::vector<llvm::Value*> v);
// pack_a of a windowed A (gemm_pack_windows.cpp): gemm_pack_a's signature
// (ld unused) and panels, each row read from the image A through the windows
// of w. index32: every element offset of A fits 32 bits.
llvm::Function* gemm_pack_a_windows(llvm::Module& m, const GemmShape& s, const lower::GemmWindows& w, bool index32,
                                    const GemmHelperOptions& o);
// pack_b of a windowed B (gemm_pack_windows.cpp): gemm_pack_b's signature
// (ld unused) and panels; op(B)'s rows are output positions, its columns the
// taps x channels of their windows in the image B.
llvm::Function* gemm_pack_b_windows(llvm::Module& m, const GemmShape& s, const lower::GemmWindows& w, bool index32,
                                    const GemmHelperOptions& o);
// void pack_b(ptr B, i64 ldb, i64 j0, i64 nc, i64 k0, i64 kc, ptr dst):
// op(B)[k0 .. k0+kc, j0 .. j0+nc] into ceil(nc/NR) panels dst[q*NR*kc + k*NR + c], columns past nc zero.
llvm::Function* gemm_pack_b(llvm::Module& m, const GemmShape& s, bool trans, const GemmHelperOptions& o);

// A new function `name` of type `fty` placed as `o` says; nullptr when the
// module has it already. Its body is to be built only when it is not Imported.
llvm::Function* create_gemm_helper(llvm::Module& m, const std::string& name, llvm::FunctionType* fty,
                                   const GemmHelperOptions& o);

}  // namespace kiln::codegen
