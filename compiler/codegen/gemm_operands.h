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
DirectRead direct_read(const lower::Kernel& k, const GemmShape& s);

// The windows a direct-A micro-kernel reads through: A's own, or its rows'.
lower::GemmWindows direct_a_windows(const lower::Kernel& k, const GemmShape& s);

// op(A)'s and op(B)'s packing helpers: from the matrix, or through its windows.
llvm::Function* pack_a_of(llvm::Module& m, const lower::Kernel& k, const lower::Program& p, const GemmShape& s,
                          const GemmHelperOptions& o);
llvm::Function* pack_b_of(llvm::Module& m, const lower::Kernel& k, const lower::Program& p, const GemmShape& s,
                          const GemmHelperOptions& o);

// The packed micro-kernels a gemm calls: the one that prefetches B
// (GemmPlan::prefetch_b) for a panel's first tile, the plain one for the
// rest. With M known to fit one tile the plain one is never called (null).
struct PackedMicrokernels {
  llvm::Function* plain = nullptr;
  llvm::Function* streaming = nullptr;
};
PackedMicrokernels packed_microkernels(llvm::Module& m, const lower::Kernel& k, const GemmShape& s,
                                       const GemmHelperOptions& o);

}  // namespace kiln::codegen
