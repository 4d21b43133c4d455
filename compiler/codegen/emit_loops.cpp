// Statements and loops. An innermost loop that plan_vector_loop accepts runs
// as a vector loop of opts_.lanes lanes (contiguous accesses become vector
// loads/stores, invariants are splatted, reductions keep a vector
// accumulator reduced once after the loop), its last partial vector masked.
// Temporaries assigned inside a loop are private to an iteration: they are
// not read after the loop.
#include <stdexcept>

#include "compiler/codegen/emitter.h"
#include "compiler/lower/inject_bug.h"
#include "compiler/codegen/gemm_ir.h"

namespace kiln::codegen {

using namespace kiln::lower;
using llvm::Value;

void KernelEmitter::emit_stmts(const std::vector<Stmt>& body) {
  for (const Stmt& s : body) emit_stmt(s);
}

void KernelEmitter::emit_store(int buffer, Value* index, Value* value) {
  const Buffer& buf = p_.buffers.at(static_cast<size_t>(buffer));
  if (buf.dtype == DType::boolean) value = b_.CreateZExt(value, lanes_of(b_.getInt8Ty()));
  const llvm::Align align(dtype_size(buf.dtype));
  llvm::Instruction* st = nullptr;
  auto stream = fn_.stream.find(buffer);
  if (vec_ && !vec_->mask && stream != fn_.stream.end() && value->getType()->isVectorTy()) {
    // Past the caches (KernelEmitter::streamable) when large enough at this
    // batch and the vector's address is aligned to its size, as x86 needs.
    Value* at = element_address(buffer, index);
    const uint64_t bytes = static_cast<uint64_t>(opts_.lanes) * dtype_size(buf.dtype);
    Value* aligned = b_.CreateICmpEQ(b_.CreateAnd(b_.CreatePtrToInt(at, b_.getInt64Ty()), b_.getInt64(bytes - 1)),
                                     b_.getInt64(0));
    gemm_if(b_, b_.CreateAnd(stream->second, aligned), [&] {
      llvm::StoreInst* nt = b_.CreateAlignedStore(value, at, llvm::Align(bytes));
      nt->setMetadata(llvm::LLVMContext::MD_nontemporal,
                      llvm::MDNode::get(c_, {llvm::ConstantAsMetadata::get(b_.getInt32(1))}));
      tag_access(nt, buffer);
    }, [&] { tag_access(b_.CreateAlignedStore(value, at, align), buffer); });
    return;
  }
  if (vec_ && vec_->mask)
    st = b_.CreateMaskedStore(value, element_address(buffer, index), align, vec_->mask);
  else
    st = b_.CreateAlignedStore(value, element_address(buffer, index), align);
  tag_access(st, buffer);
}

void KernelEmitter::emit_stmt(const Stmt& s) {
  cache_.clear();
  scalar_cache_.clear();
  switch (s.kind) {
    case StmtKind::Loop: {
      Value* lo = emit_scalar(s.lo);
      Value* hi = emit_scalar(s.hi);
      emit_loop(s, lo, hi);
      break;
    }
    case StmtKind::Store: emit_store(s.target, emit_scalar(s.index), emit_scalar(s.value)); break;
    case StmtKind::Assign: b_.CreateStore(emit_scalar(s.value), fn_.locals.at(static_cast<size_t>(s.target))); break;
  }
}

// LLVM unrolls these, and then forwards a masked store to the masked load of the next trip itself.
static bool few_constant_trips(const Stmt& loop) {
  return is_const(loop.lo) && is_const(loop.hi) && loop.hi->ival - loop.lo->ival <= 16;
}

bool KernelEmitter::accumulates_across_trips(const Stmt& loop) const {
  for (const Stmt& st : loop.body) {
    if (st.kind != StmtKind::Store) continue;
    bool read_back = false;
    for (const Stmt& other : loop.body)
      read_back = read_back || (other.value && mentions_load(other.value, st.target));
    if (!read_back) continue;
    for (const Stmt* outer : loop_stack_)
      if (!mentions_var(st.index, outer->var) && !few_constant_trips(*outer)) return true;
  }
  return false;
}

static bool innermost(const Stmt& loop) {
  for (const Stmt& s : loop.body)
    if (s.kind == StmtKind::Loop) return false;
  return true;
}

void KernelEmitter::emit_loop(const Stmt& s, Value* lo, Value* hi, bool no_vectorize_md) {
  if (!no_vectorize_md && opts_.lanes > 1 && innermost(s)) {
    if (auto plan = plan_vector_loop(s)) {
      emit_vector_loop(s, *plan, lo, hi);
      return;
    }
  }
  llvm::BasicBlock* pre = b_.GetInsertBlock();
  auto* body = llvm::BasicBlock::Create(c_, "loop." + k_->var_names[s.var], fn_.f);
  auto* exit = llvm::BasicBlock::Create(c_, "after." + k_->var_names[s.var], fn_.f);
  b_.CreateCondBr(b_.CreateICmpSLT(lo, hi), body, exit);
  b_.SetInsertPoint(body);
  llvm::PHINode* i = b_.CreatePHI(b_.getInt64Ty(), 2, k_->var_names[s.var]);
  i->addIncoming(lo, pre);
  fn_.vars[static_cast<size_t>(s.var)] = i;
  loop_stack_.push_back(&s);
  emit_stmts(s.body);
  loop_stack_.pop_back();
  Value* next = b_.CreateAdd(i, b_.getInt64(1), "", true, true);
  auto* br = b_.CreateCondBr(b_.CreateICmpSLT(next, hi), body, exit);
  i->addIncoming(next, b_.GetInsertBlock());
  // (no_vectorize_md: a vector loop's scalar tail)
  set_loop_hints(br, Unroll::ConstantTripsOnly, /*vectorize=*/!no_vectorize_md);
  b_.SetInsertPoint(exit);
}

// One vector iteration of a planned loop's body (v.i: its first lane's index):
// stores as vector stores, temporaries as vector values, reductions into
// their vector accumulators.
void KernelEmitter::emit_vector_body(const std::vector<Stmt>& body, Vec& v) {
  for (const Stmt& st : body) {
    cache_.clear();
    scalar_cache_.clear();
    vec_ = &v;
    if (st.kind == StmtKind::Store) {
      Value* index = emit_scalar(st.index);
      Value* value = emit(st.value);
      emit_store(st.target, index, value);
    } else if (v.plan->locals.at(st.target) == VectorPlan::LocalRole::Temp) {
      v.temps[st.target] = emit(st.value);
    } else {
      const ExprP& val = st.value;
      const ExprP& operand = val->args[0]->kind == ExprKind::Local && val->args[0]->id == st.target ? val->args[1]
                                                                                                     : val->args[0];
      llvm::AllocaInst* acc = llvm::cast<llvm::AllocaInst>(v.acc.at(st.target));
      Value* cur = b_.CreateLoad(acc->getAllocatedType(), acc);
      Value* next = emit_binary(val->op, cur, emit(operand), val->type);
      b_.CreateStore(v.mask ? b_.CreateSelect(v.mask, next, cur) : next, acc);
    }
    vec_ = nullptr;
  }
}

void KernelEmitter::emit_vector_loop(const Stmt& s, const VectorPlan& plan, Value* lo, Value* hi) {
  const int lanes = opts_.lanes;
  auto* i64 = b_.getInt64Ty();
  Value* n = b_.CreateBinaryIntrinsic(llvm::Intrinsic::smax, b_.CreateSub(hi, lo), b_.getInt64(0));
  Value* vec_end = b_.CreateAdd(lo, b_.CreateSub(n, b_.CreateSRem(n, b_.getInt64(static_cast<uint64_t>(lanes)))));

  Vec v;
  v.var = s.var;
  v.plan = &plan;
  for (auto& [l, role] : plan.locals) v.variant.insert(l);
  // Vector accumulators start at the identity; the local keeps its value and
  // absorbs the horizontal reduction after the loop.
  for (auto& [l, role] : plan.locals) {
    if (role != VectorPlan::LocalRole::Reduction) continue;
    Scalar t = k_->locals.at(static_cast<size_t>(l)).type;
    llvm::Type* vt = llvm::FixedVectorType::get(scalar_type(t), static_cast<unsigned>(lanes));
    llvm::AllocaInst* acc;
    {
      llvm::IRBuilderBase::InsertPointGuard guard(b_);
      b_.SetInsertPoint(&fn_.f->getEntryBlock(), fn_.f->getEntryBlock().begin());
      acc = b_.CreateAlloca(vt, nullptr, k_->locals[static_cast<size_t>(l)].name + ".vec");
    }
    vec_ = &v;
    b_.CreateStore(reduction_identity(plan.reduce_op.at(l), t), acc);
    vec_ = nullptr;
    v.acc[l] = acc;
  }

  llvm::BasicBlock* pre = b_.GetInsertBlock();
  auto* body = llvm::BasicBlock::Create(c_, "vloop." + k_->var_names[s.var], fn_.f);
  auto* exit = llvm::BasicBlock::Create(c_, "vafter." + k_->var_names[s.var], fn_.f);
  b_.CreateCondBr(b_.CreateICmpSLT(lo, vec_end), body, exit);
  b_.SetInsertPoint(body);
  llvm::PHINode* i = b_.CreatePHI(i64, 2, k_->var_names[s.var] + ".v");
  i->addIncoming(lo, pre);
  fn_.vars[static_cast<size_t>(s.var)] = i;
  v.i = i;
  emit_vector_body(s.body, v);
  Value* next = b_.CreateAdd(i, b_.getInt64(static_cast<uint64_t>(lanes)), "", true, true);
  set_loop_hints(b_.CreateCondBr(b_.CreateICmpSLT(next, vec_end), body, exit), Unroll::ConstantTripsOnly,
                 /*vectorize=*/false);
  i->addIncoming(next, b_.GetInsertBlock());
  b_.SetInsertPoint(exit);

  // The rest, fewer than lanes, as one masked vector (a 6-column row is one),
  // or as scalars where an enclosing loop reads back on its next trip what
  // this one stores (a column sum's row of partials): a load cannot take its
  // data from a masked store in flight and stalls until the store reaches
  // the cache (lenet5's 6-channel bias gradient: 0.5 -> 0.05 ms).
  if (injected_bug("vector-tail")) vec_end = b_.CreateAdd(vec_end, b_.getInt64(1));
  if (accumulates_across_trips(s)) {
    emit_loop(s, vec_end, hi, /*no_vectorize_md=*/true);
  } else gemm_if(b_, b_.CreateICmpSLT(vec_end, hi), [&] {
    fn_.vars[static_cast<size_t>(s.var)] = vec_end;
    v.i = vec_end;
    v.mask = lane_mask(b_.CreateSub(hi, vec_end));
    emit_vector_body(s.body, v);
    v.mask = nullptr;
  });

  for (auto& [l, accv] : v.acc) {
    Scalar t = k_->locals.at(static_cast<size_t>(l)).type;
    Op op = plan.reduce_op.at(l);
    auto* acc = llvm::cast<llvm::AllocaInst>(accv);
    Value* vecval = b_.CreateLoad(acc->getAllocatedType(), acc);
    Value* folded;
    if (op == Op::Add && is_float(t)) {
      auto* call = b_.CreateFAddReduce(constant(-0.0, t), vecval);
      llvm::FastMathFlags fmf;
      fmf.setAllowReassoc(true);
      call->setFastMathFlags(fmf);  // a tree of adds, not a serial chain
      folded = call;
    } else if (op == Op::Add) {
      folded = b_.CreateAddReduce(vecval);
    } else if (is_float(t)) {
      // fmaximum/fminimum, not fmax/fmin: a NaN lane gives a NaN, as Op::Max does.
      folded = op == Op::Max ? b_.CreateFPMaximumReduce(vecval) : b_.CreateFPMinimumReduce(vecval);
    } else {
      folded = op == Op::Max ? b_.CreateIntMaxReduce(vecval, true) : b_.CreateIntMinReduce(vecval, true);
    }
    llvm::AllocaInst* slot = fn_.locals.at(static_cast<size_t>(l));
    Value* before = b_.CreateLoad(slot->getAllocatedType(), slot);
    b_.CreateStore(emit_binary(op, before, folded, t), slot);
  }
}

Value* KernelEmitter::lane_mask(Value* count) {
  const auto lanes = static_cast<unsigned>(opts_.lanes);
  return b_.CreateICmpSLT(lane_indices(b_, lanes), b_.CreateVectorSplat(lanes, count));
}

}  // namespace kiln::codegen
