#pragma once
// How a packed GEMM reads its operands (gemm_operands.cpp): packed panels or
// in place, and the helpers each way calls. gemm_driver.cpp asks these both
// when it defines a module's helpers and when it emits the kernel, so the two
// always agree.
#include <llvm/IR/Function.h>
#include <llvm/IR/Module.h>

#include "compiler/codegen/gemm_ir.h"
#include "compiler/lower/loop_ir.h"

namespace kiln::codegen {

// Which operand the micro-kernel reads straight from its image, if any: the
// one decision behind both the helpers a module defines and the driver.
// a_t: op(A) = A^T in place, on the same terms as rows_in_place (causal
// attention's P^T @ dO and dS^T @ Q, char_gpt's heads of 32 columns:
// packing each 128 x 128 A^T cost as much as its multiply).
enum class DirectRead { none, a, a_t, b };

// op(B)'s packing helper: from the matrix, or through its windows.
llvm::Function* pack_b_of(llvm::Module& m, const lower::Kernel& k, const lower::Program& p, const GemmShape& s,
                          const GemmHelperOptions& o);

// The packed micro-kernels a gemm calls: the one that prefetches B
// (GemmPlan::prefetch_b) for a panel's first tile, the plain one for the
// rest. With M known to fit one tile the plain one is never called (null).
struct PackedMicrokernels {
  llvm::Function* plain = nullptr;
  llvm::Function* streaming = nullptr;
};

// The helpers a gemm calls, made in m as `o` places them: op(B)'s packer
// unless B is read in place, then the micro-kernel for how it reads A (and
// op(A)'s packer when packed). A pack-once kernel (packs_b) gets its packer
// alone. The one choice behind both a module's helpers and the kernel.
struct GemmHelpers {
  DirectRead reads = DirectRead::none;
  llvm::Function* ukr = nullptr;  // A, A^T or B read in place: the micro-kernel
  PackedMicrokernels packed;      // both packed: the micro-kernels
  llvm::Function* pack_a = nullptr;
  llvm::Function* pack_b = nullptr;
};
GemmHelpers gemm_helpers_of(llvm::Module& m, const lower::Kernel& k, const lower::Program& p, const GemmShape& s,
                            const GemmHelperOptions& o);
// gemm_helpers_of's micro-kernels made with o.tile_epilogue (a kernel's own,
// internal variants): `ukr` when A is read in place through windows,
// `packed` when both are packed; neither for A^T or B read in place.
GemmHelpers gemm_tile_epilogue_helpers_of(llvm::Module& m, const lower::Kernel& k, const GemmShape& s,
                                          const GemmHelperOptions& o);

}  // namespace kiln::codegen
