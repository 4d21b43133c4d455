#pragma once
// f32 exp, log and tanh as straight-line IR (range reduction, a polynomial,
// an exponent rebuilt from bits), the same code for a scalar and a vector of
// any width. LLVM has no vector form of these intrinsics: it calls libm once
// per lane (lenet5's tanh epilogue took 0.68 of its first convolution's 0.93
// ms, AVX-512 host). The polynomials are Cephes' (S. Moshier), accurate to
// about 1 ulp, fused multiply-adds throughout, so every lane count and ISA
// gives the same bits. Special values as libm: NaN in, NaN out; exp
// overflows to inf and underflows through the denormals to 0; log(0) = -inf,
// log(x < 0) = NaN, log(inf) = inf; tanh(+-inf) = +-1.
#include <llvm/IR/IRBuilder.h>

namespace kiln::codegen {

llvm::Value* emit_exp_f32(llvm::IRBuilder<>& b, llvm::Module& m, llvm::Value* x);
llvm::Value* emit_log_f32(llvm::IRBuilder<>& b, llvm::Module& m, llvm::Value* x);
llvm::Value* emit_tanh_f32(llvm::IRBuilder<>& b, llvm::Module& m, llvm::Value* x);
llvm::Value* emit_erf_f32(llvm::IRBuilder<>& b, llvm::Module& m, llvm::Value* x);

}  // namespace kiln::codegen
