#include "compiler/codegen/vector_math.h"

#include <initializer_list>
#include <limits>

#include <llvm/IR/Intrinsics.h>

namespace kiln::codegen {

using llvm::Value;

namespace {

// Constants and fused multiply-adds of x's shape (a float or a vector of them).
struct F32Math {
  llvm::IRBuilder<>& b;
  llvm::Module& m;
  llvm::Type* ty;   // float or <n x float>
  llvm::Type* ity;  // i32 of the same shape

  F32Math(llvm::IRBuilder<>& b_, llvm::Module& m_, Value* x) : b(b_), m(m_), ty(x->getType()) {
    ity = ty->isVectorTy() ? static_cast<llvm::Type*>(llvm::VectorType::get(b.getInt32Ty(),
                                                                             llvm::cast<llvm::VectorType>(ty)->getElementCount()))
                           : b.getInt32Ty();
  }
  Value* f(double v) const { return llvm::ConstantFP::get(ty, v); }
  Value* i(int64_t v) const { return llvm::ConstantInt::get(ity, static_cast<uint64_t>(v), true); }
  Value* call(llvm::Intrinsic::ID id, std::initializer_list<Value*> args) const {
    return b.CreateCall(llvm::Intrinsic::getDeclaration(&m, id, {ty}), args);
  }
  Value* fma(Value* a, Value* x, Value* c) const { return call(llvm::Intrinsic::fma, {a, x, c}); }
  // c[0] x^n + c[1] x^(n-1) + ... + c[n], Horner's rule.
  Value* poly(Value* x, std::initializer_list<double> c) const {
    Value* acc = nullptr;
    for (double k : c) acc = acc ? fma(acc, x, f(k)) : f(k);
    return acc;
  }
  Value* is_nan(Value* x) const { return b.CreateFCmpUNO(x, x); }
  // 2^n for integer n in [-126, 127], from its exponent bits.
  Value* pow2(Value* n) const { return b.CreateBitCast(b.CreateShl(b.CreateAdd(n, i(127)), i(23)), ty); }
};

}  // namespace

Value* emit_exp_f32(llvm::IRBuilder<>& b, llvm::Module& m, Value* x) {
  const F32Math k(b, m, x);
  Value* nan = k.is_nan(x);
  // Past 88.8 the result is inf, below -104 zero (the rebuilt exponent says so).
  Value* xc = b.CreateSelect(nan, k.f(0), x);
  xc = b.CreateSelect(b.CreateFCmpOGT(xc, k.f(88.8)), k.f(88.8), xc);
  xc = b.CreateSelect(b.CreateFCmpOLT(xc, k.f(-104.0)), k.f(-104.0), xc);
  // x = n ln2 + r, |r| <= ln2 / 2 (ln2 in two parts: r exact).
  Value* n = k.call(llvm::Intrinsic::roundeven, {b.CreateFMul(xc, k.f(1.44269504088896341))});
  Value* r = k.fma(n, k.f(-0.693359375), xc);
  r = k.fma(n, k.f(2.12194440e-4), r);
  Value* p = k.poly(r, {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3, 4.1665795894E-2, 1.6666665459E-1,
                        5.0000001201E-1});
  Value* y = b.CreateFAdd(k.fma(p, b.CreateFMul(r, r), r), k.f(1.0));
  // 2^n in two factors, each a normal float, so results reach the denormals.
  Value* ni = b.CreateFPToSI(n, k.ity);
  Value* n1 = b.CreateAShr(ni, k.i(1));
  Value* res = b.CreateFMul(b.CreateFMul(y, k.pow2(n1)), k.pow2(b.CreateSub(ni, n1)));
  return b.CreateSelect(nan, x, res);
}

Value* emit_log_f32(llvm::IRBuilder<>& b, llvm::Module& m, Value* x) {
  const F32Math k(b, m, x);
  // Denormals scaled into the normal range first.
  Value* small = b.CreateFCmpOLT(x, k.f(std::numeric_limits<float>::min()));
  Value* xs = b.CreateSelect(small, b.CreateFMul(x, k.f(8388608.0)), x);
  Value* bits = b.CreateBitCast(xs, k.ity);
  // x = mant * 2^e with mant in [0.5, 1).
  Value* e = b.CreateSub(b.CreateLShr(bits, k.i(23)), k.i(126));
  e = b.CreateSub(e, b.CreateSelect(small, k.i(23), k.i(0)));
  Value* mant = b.CreateBitCast(b.CreateOr(b.CreateAnd(bits, k.i(0x807fffff)), k.i(0x3f000000)), k.ty);
  // mant in [sqrt(1/2), sqrt(2)), as m = mant - 1 (exact either way).
  Value* low = b.CreateFCmpOLT(mant, k.f(0.707106781186547524));
  e = b.CreateSub(e, b.CreateSelect(low, k.i(1), k.i(0)));
  Value* mm = b.CreateSelect(low, b.CreateFSub(b.CreateFAdd(mant, mant), k.f(1.0)), b.CreateFSub(mant, k.f(1.0)));
  Value* z = b.CreateFMul(mm, mm);
  Value* p = k.poly(mm, {7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1,
                         -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1});
  Value* y = b.CreateFMul(b.CreateFMul(p, mm), z);
  Value* fe = b.CreateSIToFP(e, k.ty);
  y = k.fma(fe, k.f(-2.12194440e-4), y);
  y = k.fma(z, k.f(-0.5), y);
  Value* res = k.fma(fe, k.f(0.693359375), b.CreateFAdd(mm, y));
  const double inf = std::numeric_limits<double>::infinity();
  res = b.CreateSelect(b.CreateFCmpOEQ(x, k.f(0.0)), k.f(-inf), res);
  res = b.CreateSelect(b.CreateFCmpOLT(x, k.f(0.0)), k.f(std::numeric_limits<double>::quiet_NaN()), res);
  res = b.CreateSelect(b.CreateFCmpOEQ(x, k.f(inf)), x, res);
  return b.CreateSelect(k.is_nan(x), x, res);
}

Value* emit_tanh_f32(llvm::IRBuilder<>& b, llvm::Module& m, Value* x) {
  const F32Math k(b, m, x);
  Value* ax = k.call(llvm::Intrinsic::fabs, {x});
  // |x| >= 0.625: 1 - 2 / (e^2|x| + 1), signed (1 at inf).
  Value* e = emit_exp_f32(b, m, b.CreateFAdd(ax, ax));
  Value* big = b.CreateFSub(k.f(1.0), b.CreateFDiv(k.f(2.0), b.CreateFAdd(e, k.f(1.0))));
  big = k.call(llvm::Intrinsic::copysign, {big, x});
  // Below, an odd polynomial (no cancellation near 0).
  Value* z = b.CreateFMul(x, x);
  Value* p = k.poly(z, {-5.70498872745E-3, 2.06390887954E-2, -5.37397155531E-2, 1.33314422036E-1, -3.33332819422E-1});
  Value* small = k.fma(b.CreateFMul(p, z), x, x);
  Value* res = b.CreateSelect(b.CreateFCmpOLT(ax, k.f(0.625)), small, big);
  // NaN as it came, and -0 stays -0 (the polynomial's sum would make it +0).
  return b.CreateSelect(b.CreateOr(k.is_nan(x), b.CreateFCmpOEQ(ax, k.f(0.0))), x, res);
}

// erf(x) = x P(x^2) / Q(x^2) on x clamped to [-3.92, 3.92] (beyond, erf is
// +-1 to f32 precision), P of degree 6 and Q of degree 4 in x^2, fitted
// (Loeb's linearized least squares, then Lawson's reweighting toward the
// minimax) to std::erf: 5e-8 in exact arithmetic, 3e-7 evaluated in f32.
// Horner's rule in FMAs and one division, no exp: GELU's forward pass and
// its gradient pay it per element.
Value* emit_erf_f32(llvm::IRBuilder<>& b, llvm::Module& m, Value* x) {
  const F32Math k(b, m, x);
  constexpr double kEdge = 3.92;
  // (minnum/maxnum would turn a NaN into the bound: compare and select instead)
  Value* clamped = b.CreateSelect(b.CreateFCmpOGT(x, k.f(kEdge)), k.f(kEdge), x);
  clamped = b.CreateSelect(b.CreateFCmpOLT(clamped, k.f(-kEdge)), k.f(-kEdge), clamped);
  Value* t = b.CreateFMul(clamped, clamped);
  Value* num = k.poly(t, {1.9918216999052663e-08, -1.994963053086478e-06, 0.00014915125464620235, 0.00397969105761125,
                          0.05141948857733938, 0.20626868685908145, 1.1283787878524523});
  Value* den = k.poly(t, {0.0010257652856263217, 0.014903300026180103, 0.11762980209636645, 0.5161296946549018, 1.0});
  Value* r = b.CreateFDiv(b.CreateFMul(clamped, num), den);
  // The fit overshoots 1 by up to 2e-7 near the clamp: erf stays in [-1, 1]
  // (1 - erf must not go negative; NaN passes both comparisons unchanged).
  r = b.CreateSelect(b.CreateFCmpOGT(r, k.f(1.0)), k.f(1.0), r);
  return b.CreateSelect(b.CreateFCmpOLT(r, k.f(-1.0)), k.f(-1.0), r);
}

}  // namespace kiln::codegen
