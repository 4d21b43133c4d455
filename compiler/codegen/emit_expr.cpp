// Scalar expressions -> LLVM values, as scalars or as vectors of the host width.
#include <llvm/IR/Intrinsics.h>

#include <cmath>
#include <stdexcept>

#include "compiler/codegen/emitter.h"
#include "compiler/codegen/vector_math.h"

namespace kiln::codegen {

using namespace kiln::lower;
using llvm::Value;

llvm::Type* KernelEmitter::scalar_type(Scalar s) {
  switch (s) {
    case Scalar::f32: return b_.getFloatTy();
    case Scalar::f64: return b_.getDoubleTy();
    case Scalar::i32: return b_.getInt32Ty();
    case Scalar::i64: return b_.getInt64Ty();
    case Scalar::i1: return b_.getInt1Ty();
  }
  return nullptr;
}

llvm::Type* KernelEmitter::storage_type(DType d) {
  return d == DType::boolean ? b_.getInt8Ty() : scalar_type(scalar_of(d));
}

llvm::Type* KernelEmitter::lanes_of(llvm::Type* t) {
  return vec_ ? llvm::FixedVectorType::get(t, static_cast<unsigned>(opts_.lanes)) : t;
}

Value* KernelEmitter::splat(Value* v) {
  return vec_ ? b_.CreateVectorSplat(static_cast<unsigned>(opts_.lanes), v) : v;
}

llvm::Constant* KernelEmitter::constant(double v, Scalar t) {
  llvm::Type* ty = scalar_type(t);
  if (is_float(t)) return llvm::ConstantFP::get(ty, v);
  return llvm::ConstantInt::get(ty, static_cast<uint64_t>(static_cast<int64_t>(v)), true);
}

Value* KernelEmitter::emit(const ExprP& e) {
  auto& cache = vec_ ? cache_ : scalar_cache_;
  auto it = cache.find(e.get());
  if (it != cache.end()) return it->second;
  Value* v = emit_uncached(e);
  cache[e.get()] = v;
  return v;
}

// Index math stays scalar inside vector loops: the first lane's index.
Value* KernelEmitter::emit_scalar(const ExprP& e) {
  Vec* saved = vec_;
  vec_ = nullptr;
  Value* v = emit(e);
  vec_ = saved;
  return v;
}

Value* KernelEmitter::emit_uncached(const ExprP& e) {
  switch (e->kind) {
    case ExprKind::Const:
      return splat(is_float(e->type) ? constant(e->fval, e->type) : constant(static_cast<double>(e->ival), e->type));
    case ExprKind::Var: {
      Value* v = fn_.vars.at(static_cast<size_t>(e->id));
      if (!vec_ || e->id != vec_->var) return splat(v);
      std::vector<llvm::Constant*> steps;
      for (int l = 0; l < opts_.lanes; ++l) steps.push_back(b_.getInt64(static_cast<uint64_t>(l)));
      return b_.CreateAdd(splat(v), llvm::ConstantVector::get(steps));
    }
    case ExprKind::Batch: return splat(fn_.batch);
    case ExprKind::Local: {
      if (vec_) {
        auto t = vec_->temps.find(e->id);
        if (t != vec_->temps.end()) return t->second;
        if (vec_->acc.count(e->id)) throw std::logic_error("a reduction local is read inside its vector loop");
      }
      llvm::AllocaInst* slot = fn_.locals.at(static_cast<size_t>(e->id));
      return splat(b_.CreateLoad(slot->getAllocatedType(), slot));
    }
    case ExprKind::Load: return emit_load(*e);
    case ExprKind::Unary: return emit_unary(e->op, emit(e->args[0]), e->args[0]->type);
    case ExprKind::Binary: return emit_binary(e->op, emit(e->args[0]), emit(e->args[1]), e->args[0]->type);
    case ExprKind::Select: return b_.CreateSelect(emit(e->args[0]), emit(e->args[1]), emit(e->args[2]));
    case ExprKind::Cast: return emit_cast(emit(e->args[0]), e->args[0]->type, e->type);
  }
  throw std::logic_error("unknown expression kind");
}

Value* KernelEmitter::element_address(int buffer, Value* index) {
  const Buffer& buf = p_.buffers.at(static_cast<size_t>(buffer));
  return b_.CreateInBoundsGEP(storage_type(buf.dtype), base_pointer(buffer), index);
}

Value* KernelEmitter::emit_load(const Expr& e) {
  const Buffer& buf = p_.buffers.at(static_cast<size_t>(e.id));
  llvm::Type* elem = storage_type(buf.dtype);
  auto align = llvm::Align(dtype_size(buf.dtype));
  Value* raw;
  if (vec_ && stride_along(e.args[0], vec_->var, vec_->variant) == 1) {
    Value* addr = element_address(e.id, emit_scalar(e.args[0]));
    llvm::Instruction* ld = nullptr;
    if (vec_->mask)
      ld = b_.CreateMaskedLoad(lanes_of(elem), addr, align, vec_->mask, llvm::Constant::getNullValue(lanes_of(elem)));
    else
      ld = b_.CreateAlignedLoad(lanes_of(elem), addr, align);
    tag_access(ld, e.id);
    raw = ld;
  } else {
    // Invariant in a vector loop (the plan guarantees it) or a scalar load.
    Vec* saved = vec_;
    vec_ = nullptr;
    auto* ld = b_.CreateAlignedLoad(elem, element_address(e.id, emit(e.args[0])), align);
    tag_access(ld, e.id);
    vec_ = saved;
    raw = splat(ld);
  }
  if (buf.dtype == DType::boolean) return b_.CreateICmpNE(raw, llvm::Constant::getNullValue(raw->getType()));
  return raw;
}

Value* KernelEmitter::emit_unary(Op op, Value* a, Scalar t) {
  llvm::Type* ty = a->getType();
  auto intrinsic = [&](llvm::Intrinsic::ID id) {
    return b_.CreateCall(llvm::Intrinsic::getDeclaration(&m_, id, {ty}), {a});
  };
  // f32 exp, log and tanh inline, whole vectors at once (vector_math.h); f64 through libm.
  if (t == Scalar::f32) {
    if (op == Op::Exp) return emit_exp_f32(b_, m_, a);
    if (op == Op::Log) return emit_log_f32(b_, m_, a);
    if (op == Op::Tanh) return emit_tanh_f32(b_, m_, a);
    if (op == Op::Erf) return emit_erf_f32(b_, m_, a);
  }
  switch (op) {
    case Op::Neg: return is_float(t) ? b_.CreateFNeg(a) : b_.CreateNeg(a);
    case Op::Exp: return intrinsic(llvm::Intrinsic::exp);
    case Op::Log: return intrinsic(llvm::Intrinsic::log);
    case Op::Sqrt: return intrinsic(llvm::Intrinsic::sqrt);
    case Op::Abs:
      if (is_float(t)) return intrinsic(llvm::Intrinsic::fabs);
      return b_.CreateCall(llvm::Intrinsic::getDeclaration(&m_, llvm::Intrinsic::abs, {ty}), {a, b_.getFalse()});
    case Op::Not: return b_.CreateNot(a);
    case Op::Floor: return intrinsic(llvm::Intrinsic::floor);
    case Op::Ceil: return intrinsic(llvm::Intrinsic::ceil);
    case Op::Round: return intrinsic(llvm::Intrinsic::roundeven);
    case Op::Sin: return intrinsic(llvm::Intrinsic::sin);
    case Op::Cos: return intrinsic(llvm::Intrinsic::cos);
    case Op::Tanh: return intrinsic(llvm::Intrinsic::tanh);
    case Op::Erf: {  // f64: libm's, lane by lane (LLVM has no erf intrinsic to vectorize)
      llvm::Type* elem = ty->getScalarType();
      llvm::FunctionCallee erf = m_.getOrInsertFunction("erf", llvm::FunctionType::get(elem, {elem}, false));
      if (auto* fn = llvm::dyn_cast<llvm::Function>(erf.getCallee())) {  // pure: LLVM may hoist and merge it
        fn->setDoesNotThrow();
        fn->setWillReturn();
        fn->setDoesNotAccessMemory();
      }
      auto* vty = llvm::dyn_cast<llvm::FixedVectorType>(ty);
      if (!vty) return b_.CreateCall(erf, {a});
      Value* r = llvm::PoisonValue::get(ty);
      for (unsigned i = 0; i < vty->getNumElements(); ++i)
        r = b_.CreateInsertElement(r, b_.CreateCall(erf, {b_.CreateExtractElement(a, i)}), i);
      return r;
    }
    default: break;
  }
  throw std::logic_error("not a unary op: " + std::string(op_name(op)));
}

// A float constant (scalar or splat vector) that is not a NaN.
static bool is_number_constant(const Value* v) {
  const auto* c = llvm::dyn_cast<llvm::Constant>(v);
  if (!c) return false;
  if (v->getType()->isVectorTy()) c = c->getSplatValue();
  const auto* fp = llvm::dyn_cast_or_null<llvm::ConstantFP>(c);
  return fp && !fp->isNaN();
}

Value* KernelEmitter::emit_binary(Op op, Value* a, Value* b, Scalar t) {
  bool f = is_float(t);
  switch (op) {
    case Op::Add: return f ? b_.CreateFAdd(a, b) : b_.CreateAdd(a, b);
    case Op::Sub: return f ? b_.CreateFSub(a, b) : b_.CreateSub(a, b);
    case Op::Mul: return f ? b_.CreateFMul(a, b) : b_.CreateMul(a, b);
    case Op::Div:
    case Op::Mod: {
      if (f) return op == Op::Div ? b_.CreateFDiv(a, b) : b_.CreateFRem(a, b);
      if (llvm::isa<llvm::Constant>(b)) return op == Op::Div ? b_.CreateSDiv(a, b) : b_.CreateSRem(a, b);
      // Data-dependent integer division must not trap (x86 faults on /0 and
      // MIN/-1): a zero divisor gives 0, and -1 divides by negation.
      Value* zero = llvm::Constant::getNullValue(b->getType());
      Value* minus_one = llvm::Constant::getAllOnesValue(b->getType());
      Value* is_zero = b_.CreateICmpEQ(b, zero);
      Value* is_m1 = b_.CreateICmpEQ(b, minus_one);
      Value* safe = b_.CreateSelect(b_.CreateOr(is_zero, is_m1), llvm::ConstantInt::get(b->getType(), 1), b);
      Value* q = op == Op::Div ? b_.CreateSDiv(a, safe) : b_.CreateSRem(a, safe);
      Value* by_m1 = op == Op::Div ? b_.CreateNeg(a) : zero;
      return b_.CreateSelect(is_zero, zero, b_.CreateSelect(is_m1, by_m1, q));
    }
    // max/min as compare+select: one instruction on x86 (maxps), and the
    // interpreter's "a if a > b else b" for every input.
    // Floats: a NaN in either operand gives a NaN (numpy's maximum; the
    // interpreter's interp::nan_max): a if a is NaN or wins, else b, which is
    // the NaN when only b is one. One compare more than maxps, no branch.
    // Against a constant that is not a NaN (a clip's bounds, ReLU's zero) the
    // two compares are one: "a wins or is unordered" is an unordered
    // compare. (The same result for every a, signed zeros included.)
    case Op::Max:
      if (!f) return b_.CreateSelect(b_.CreateICmpSGT(a, b), a, b);
      if (is_number_constant(b)) return b_.CreateSelect(b_.CreateFCmpUGT(a, b), a, b);
      return b_.CreateSelect(b_.CreateOr(b_.CreateFCmpOGT(a, b), b_.CreateFCmpUNO(a, a)), a, b);
    case Op::Min:
      if (!f) return b_.CreateSelect(b_.CreateICmpSLT(a, b), a, b);
      if (is_number_constant(b)) return b_.CreateSelect(b_.CreateFCmpULT(a, b), a, b);
      return b_.CreateSelect(b_.CreateOr(b_.CreateFCmpOLT(a, b), b_.CreateFCmpUNO(a, a)), a, b);
    case Op::Pow:
      if (!f) throw std::logic_error("pow on integers");
      return b_.CreateCall(llvm::Intrinsic::getDeclaration(&m_, llvm::Intrinsic::pow, {a->getType()}), {a, b});
    case Op::And: return b_.CreateAnd(a, b);
    case Op::Or: return b_.CreateOr(a, b);
    case Op::Xor: return b_.CreateXor(a, b);
    case Op::Shr: return b_.CreateLShr(a, b);
    case Op::Lt: return f ? b_.CreateFCmpOLT(a, b) : b_.CreateICmpSLT(a, b);
    case Op::Le: return f ? b_.CreateFCmpOLE(a, b) : b_.CreateICmpSLE(a, b);
    case Op::Gt: return f ? b_.CreateFCmpOGT(a, b) : b_.CreateICmpSGT(a, b);
    case Op::Ge: return f ? b_.CreateFCmpOGE(a, b) : b_.CreateICmpSGE(a, b);
    case Op::Eq: return f ? b_.CreateFCmpOEQ(a, b) : b_.CreateICmpEQ(a, b);
    case Op::Ne: return f ? b_.CreateFCmpUNE(a, b) : b_.CreateICmpNE(a, b);
    default: break;
  }
  throw std::logic_error("not a binary op: " + std::string(op_name(op)));
}

Value* KernelEmitter::emit_cast(Value* a, Scalar from, Scalar to) {
  llvm::Type* ty = lanes_of(scalar_type(to));
  if (from == to) return a;
  if (to == Scalar::i1) {
    Value* zero = llvm::Constant::getNullValue(a->getType());
    return is_float(from) ? b_.CreateFCmpUNE(a, zero) : b_.CreateICmpNE(a, zero);
  }
  if (is_float(from) && is_float(to)) return b_.CreateFPCast(a, ty);
  // Saturating (NaN -> 0, out of range -> the nearest end): defined for every
  // input, as the interpreter's cast; a plain fptosi is poison there.
  if (is_float(from)) return b_.CreateIntrinsic(llvm::Intrinsic::fptosi_sat, {ty, a->getType()}, {a});
  if (is_float(to)) return from == Scalar::i1 ? b_.CreateUIToFP(a, ty) : b_.CreateSIToFP(a, ty);
  return from == Scalar::i1 ? b_.CreateZExt(a, ty) : b_.CreateSExtOrTrunc(a, ty);
}

Value* KernelEmitter::reduction_identity(Op op, Scalar t) {
  double v = 0;
  if (op == Op::Add) v = is_float(t) ? -0.0 : 0;
  else if (op == Op::Max) v = is_float(t) ? -INFINITY : (t == Scalar::i32 ? INT32_MIN : static_cast<double>(INT64_MIN));
  else if (op == Op::Min) v = is_float(t) ? INFINITY : (t == Scalar::i32 ? INT32_MAX : 9.2233720368547748e18);
  if (!is_float(t) && op == Op::Min && t == Scalar::i64)
    return splat(llvm::ConstantInt::get(scalar_type(t), static_cast<uint64_t>(INT64_MAX)));
  return splat(constant(v, t));
}

}  // namespace kiln::codegen
