#pragma once
// Internal to codegen: the pieces of the packed f32 GEMM, built directly as
// LLVM IR (register blocking needs vector accumulators held in SSA values,
// which Loop IR cannot express).
//
//   gemm_microkernel.cpp  C[MR x NR] (+)= A panel x B panel, MR x NR/lanes vector FMAs
//   gemm_pack.cpp         op(A) -> MR-row panels, op(B) -> NR-column panels (zero padded)
//   gemm_driver.cpp       the kernel: blocking KC/MC/NC, groups over parallel_for
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Module.h>

#include <functional>
#include <string>

namespace kiln::codegen {

struct GemmShape {
  int lanes = 8;     // floats per vector
  int mr = 6;        // rows of the micro-kernel
  int nr_vecs = 2;   // vectors per row: NR = nr_vecs * lanes
  int nr() const { return nr_vecs * lanes; }
};

// for (i = lo; i < hi; i += step) body(i), with i an i64 phi. Leaves the
// builder after the loop.
void gemm_for(llvm::IRBuilder<>& b, llvm::Value* lo, llvm::Value* hi, llvm::Value* step, const std::string& name,
              const std::function<void(llvm::Value*)>& body);
inline void gemm_for(llvm::IRBuilder<>& b, llvm::Value* lo, llvm::Value* hi, int64_t step, const std::string& name,
                     const std::function<void(llvm::Value*)>& body) {
  gemm_for(b, lo, hi, b.getInt64(static_cast<uint64_t>(step)), name, body);
}
// if (cond) then_() else else_(); either may be empty.
void gemm_if(llvm::IRBuilder<>& b, llvm::Value* cond, const std::function<void()>& then_,
             const std::function<void()>& else_ = {});

// void ukr(i64 kc, ptr a, ptr b, ptr c, i64 ldc, i64 m, i64 n, i1 load_c):
// C[i*ldc + j] = (load_c ? C[i*ldc + j] : 0) + sum_k a[k*MR + i] * b[k*NR + j]
// for i < m <= MR, j < n <= NR, the sum over k in order with one FMA per step.
// `attrs` adds the target attributes to the function. Created once per module.
llvm::Function* gemm_microkernel(llvm::Module& m, const GemmShape& s, const std::function<void(llvm::Function*)>& attrs);

// void pack_a(ptr A, i64 lda, i64 i0, i64 mc, i64 k0, i64 kc, ptr dst):
// op(A)[i0 .. i0+mc, k0 .. k0+kc] into ceil(mc/MR) panels dst[p*MR*kc + k*MR + r], rows past mc zero.
llvm::Function* gemm_pack_a(llvm::Module& m, const GemmShape& s, bool trans,
                            const std::function<void(llvm::Function*)>& attrs);
// void pack_b(ptr B, i64 ldb, i64 j0, i64 nc, i64 k0, i64 kc, ptr dst):
// op(B)[k0 .. k0+kc, j0 .. j0+nc] into ceil(nc/NR) panels dst[q*NR*kc + k*NR + c], columns past nc zero.
llvm::Function* gemm_pack_b(llvm::Module& m, const GemmShape& s, bool trans,
                            const std::function<void(llvm::Function*)>& attrs);

}  // namespace kiln::codegen
