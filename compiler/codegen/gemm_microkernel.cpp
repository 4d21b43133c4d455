// The register-blocked micro-kernels of the packed GEMM (A from its packed
// panel, or op(A) = A^T read in place), plus the small control-flow helpers
// the GEMM builders share.
//
// MR rows x NR/lanes vectors of accumulators live in SSA phis across the K
// loop: per step, NR/lanes vector loads of the B panel, MR broadcasts of the A
// panel, MR x NR/lanes fused multiply-adds. Each C element is one accumulator
// lane summed over k in order, so the result does not depend on where the
// tile sits in C (edge tiles run the same vector code, then store partially).
#include <llvm/IR/Intrinsics.h>

#include "compiler/codegen/gemm_ir.h"

namespace kiln::codegen {

using llvm::Value;

void gemm_for(llvm::IRBuilder<>& b, Value* lo, Value* hi, Value* step, const std::string& name,
              const std::function<void(Value*)>& body) {
  llvm::LLVMContext& c = b.getContext();
  llvm::Function* f = b.GetInsertBlock()->getParent();
  llvm::BasicBlock* pre = b.GetInsertBlock();
  auto* head = llvm::BasicBlock::Create(c, name + ".head", f);
  auto* loop = llvm::BasicBlock::Create(c, name + ".body", f);
  auto* exit = llvm::BasicBlock::Create(c, name + ".end", f);
  b.CreateBr(head);
  b.SetInsertPoint(head);
  llvm::PHINode* i = b.CreatePHI(b.getInt64Ty(), 2, name);
  i->addIncoming(lo, pre);
  b.CreateCondBr(b.CreateICmpSLT(i, hi), loop, exit);
  b.SetInsertPoint(loop);
  body(i);
  Value* next = b.CreateAdd(i, step, name + ".next", false, true);
  i->addIncoming(next, b.GetInsertBlock());
  set_loop_hints(b.CreateBr(head), Unroll::Never, /*vectorize=*/false);
  b.SetInsertPoint(exit);
}

void gemm_for_walk(llvm::IRBuilder<>& b, Value* lo, Value* hi, int64_t step, const std::string& name,
                   const std::vector<GemmWalker>& walkers,
                   const std::function<void(Value*, const std::vector<Value*>&)>& body) {
  llvm::BasicBlock* pre = b.GetInsertBlock();
  std::vector<llvm::PHINode*> phis;
  gemm_for(b, lo, hi, step, name, [&](Value* i) {
    // The phis go at the top of the loop header, beside i's.
    llvm::BasicBlock* head = llvm::cast<llvm::PHINode>(i)->getParent();
    llvm::IRBuilder<> hb(head, head->getFirstNonPHIIt());
    std::vector<Value*> ptrs;
    for (const GemmWalker& w : walkers) {
      phis.push_back(hb.CreatePHI(b.getPtrTy(), 2, name + ".p"));
      phis.back()->addIncoming(w.start, pre);
      ptrs.push_back(phis.back());
    }
    body(i, ptrs);
    for (size_t k = 0; k < walkers.size(); ++k)
      phis[k]->addIncoming(b.CreateInBoundsGEP(b.getFloatTy(), phis[k], walkers[k].stride), b.GetInsertBlock());
  });
}

void set_loop_hints(llvm::BranchInst* latch, Unroll unroll, bool vectorize) {
  llvm::LLVMContext& c = latch->getContext();
  const char* no_unroll = unroll == Unroll::Never ? "llvm.loop.unroll.disable" : "llvm.loop.unroll.runtime.disable";
  llvm::SmallVector<llvm::Metadata*, 3> ops{nullptr, llvm::MDNode::get(c, {llvm::MDString::get(c, no_unroll)})};
  if (!vectorize)
    ops.push_back(llvm::MDNode::get(c, {llvm::MDString::get(c, "llvm.loop.vectorize.enable"),
                                        llvm::ConstantAsMetadata::get(llvm::ConstantInt::getFalse(c))}));
  auto* id = llvm::MDNode::getDistinct(c, ops);
  id->replaceOperandWith(0, id);
  latch->setMetadata(llvm::LLVMContext::MD_loop, id);
}

void set_unroll_count(llvm::BranchInst* latch, int count) {
  llvm::LLVMContext& c = latch->getContext();
  llvm::MDNode* unroll = llvm::MDNode::get(
      c, {llvm::MDString::get(c, "llvm.loop.unroll.count"), llvm::ConstantAsMetadata::get(llvm::ConstantInt::get(llvm::Type::getInt32Ty(c), static_cast<uint64_t>(count)))});
  llvm::MDNode* loop_md = llvm::MDNode::getDistinct(c, {nullptr, unroll});
  loop_md->replaceOperandWith(0, loop_md);
  latch->setMetadata(llvm::LLVMContext::MD_loop, loop_md);
}

void gemm_if(llvm::IRBuilder<>& b, Value* cond, const std::function<void()>& then_,
             const std::function<void()>& else_) {
  llvm::LLVMContext& c = b.getContext();
  llvm::Function* f = b.GetInsertBlock()->getParent();
  auto* tb = llvm::BasicBlock::Create(c, "then", f);
  auto* eb = llvm::BasicBlock::Create(c, "else", f);
  auto* done = llvm::BasicBlock::Create(c, "endif", f);
  b.CreateCondBr(cond, tb, eb);
  b.SetInsertPoint(tb);
  if (then_) then_();
  b.CreateBr(done);
  b.SetInsertPoint(eb);
  if (else_) else_();
  b.CreateBr(done);
  b.SetInsertPoint(done);
}

llvm::Function* create_gemm_helper(llvm::Module& m, const std::string& name, llvm::FunctionType* fty,
                                   const GemmHelperOptions& o) {
  if (m.getFunction(name)) return nullptr;
  auto linkage = o.placement == HelperPlacement::Internal ? llvm::GlobalValue::InternalLinkage
                                                          : llvm::GlobalValue::ExternalLinkage;
  auto* f = llvm::Function::Create(fty, linkage, name, m);
  if (o.placement != HelperPlacement::Imported && o.attrs) o.attrs(f);
  return f;
}

void gemm_prefetch_c(llvm::IRBuilder<>& b, llvm::Module& m, const GemmShape& s, Value* cp, Value* ldc) {
  llvm::Type *f32 = b.getFloatTy(), *ptr = b.getPtrTy();
  llvm::Function* prefetch = llvm::Intrinsic::getDeclaration(&m, llvm::Intrinsic::prefetch, {ptr});
  for (int i = 0; i < s.mr; ++i) {
    Value* row = b.CreateGEP(f32, cp, b.CreateMul(b.getInt64(static_cast<uint64_t>(i)), ldc));
    for (int at : {0, s.nr() - 1})
      b.CreateCall(prefetch, {b.CreateGEP(f32, row, b.getInt64(static_cast<uint64_t>(at))), b.getInt32(1), b.getInt32(3),
                              b.getInt32(1)});
  }
}

void gemm_store_tile(llvm::IRBuilder<>& b, const GemmShape& s, const std::vector<Value*>& res, Value* cp, Value* ldc,
                     Value* m_eff, Value* n_eff, Value* load_c) {
  const int mr = s.mr, nv = s.nr_vecs, lanes = s.lanes, nr = s.nr();
  llvm::Type* f32 = b.getFloatTy();
  auto* vec = llvm::FixedVectorType::get(f32, static_cast<unsigned>(lanes));
  const llvm::Align a4(4);
  auto row_ptr = [&](Value* i) { return b.CreateInBoundsGEP(f32, cp, b.CreateMul(i, ldc)); };
  Value* full = b.CreateAnd(b.CreateICmpEQ(m_eff, b.getInt64(static_cast<uint64_t>(mr))),
                            b.CreateICmpEQ(n_eff, b.getInt64(static_cast<uint64_t>(nr))));
  gemm_if(b, full, [&] {
    // Whole tile: vector stores straight into C.
    auto store_all = [&](bool add) {
      for (int i = 0; i < mr; ++i) {
        Value* row = row_ptr(b.getInt64(static_cast<uint64_t>(i)));
        for (int v = 0; v < nv; ++v) {
          Value* p = b.CreateConstInBoundsGEP1_64(f32, row, static_cast<uint64_t>(v * lanes));
          Value* x = res[static_cast<size_t>(i * nv + v)];
          if (add) x = b.CreateFAdd(b.CreateAlignedLoad(vec, p, a4), x);
          b.CreateAlignedStore(x, p, a4);
        }
      }
    };
    gemm_if(b, load_c, [&] { store_all(true); }, [&] { store_all(false); });
  }, [&] {
    // Edge tile: the m_eff x n_eff corner, row by row under column masks
    // (element by element, the copy cost as much as a 24-column tile's
    // multiplies: a third of MobileNetV2's projections).
    std::vector<llvm::Constant*> lane_at;
    for (int t = 0; t < lanes; ++t) lane_at.push_back(b.getInt32(static_cast<uint32_t>(t)));
    Value* lane = llvm::ConstantVector::get(lane_at);
    auto store_edge = [&](bool add) {
      for (int i = 0; i < mr; ++i) {
        gemm_if(b, b.CreateICmpSLT(b.getInt64(static_cast<uint64_t>(i)), m_eff), [&] {
          Value* row = row_ptr(b.getInt64(static_cast<uint64_t>(i)));
          for (int v = 0; v < nv; ++v) {
            Value* left = b.CreateTrunc(b.CreateSub(n_eff, b.getInt64(static_cast<uint64_t>(v * lanes))), b.getInt32Ty());
            Value* mask = b.CreateICmpSLT(lane, b.CreateVectorSplat(static_cast<unsigned>(lanes), left));
            Value* p = b.CreateConstInBoundsGEP1_64(f32, row, static_cast<uint64_t>(v * lanes));
            Value* x = res[static_cast<size_t>(i * nv + v)];
            if (add) x = b.CreateFAdd(b.CreateMaskedLoad(vec, p, a4, mask, llvm::Constant::getNullValue(vec)), x);
            b.CreateMaskedStore(x, p, a4, mask);
          }
        });
      }
    };
    gemm_if(b, load_c, [&] { store_edge(true); }, [&] { store_edge(false); });
  });
}

namespace {

// The K loop of the micro-kernels that walk A by a pointer: from `entry`,
// kc >= 1 depths of acc[i][v] += a(i) * B[v], B's panel at bp (NR floats a
// depth), a(i) the scalar a_at(i, ap) points to, ap starting at a0 and moving
// a_step floats a depth. Leaves the builder in `exit`; returns the sums.
std::vector<Value*> k_loop(llvm::IRBuilder<>& b, llvm::Module& m, const GemmShape& s, llvm::BasicBlock* entry,
                           llvm::BasicBlock* exit, Value* kc, Value* bp, Value* a0, Value* a_step,
                           const std::function<Value*(int, Value*)>& a_at, Value* a_prefetch = nullptr) {
  const int mr = s.mr, nv = s.nr_vecs, lanes = s.lanes, nr = s.nr();
  llvm::LLVMContext& c = m.getContext();
  llvm::Type *i64 = b.getInt64Ty(), *f32 = b.getFloatTy(), *ptr = b.getPtrTy();
  auto* vec = llvm::FixedVectorType::get(f32, static_cast<unsigned>(lanes));
  const llvm::Align a4(4);
  auto* loop = llvm::BasicBlock::Create(c, "k", entry->getParent(), exit);
  b.CreateBr(loop);
  b.SetInsertPoint(loop);
  llvm::PHINode* k = b.CreatePHI(i64, 2, "k");
  k->addIncoming(b.getInt64(0), entry);
  std::vector<llvm::PHINode*> acc;
  for (int i = 0; i < mr * nv; ++i) {
    acc.push_back(b.CreatePHI(vec, 2, "acc"));
    acc.back()->addIncoming(llvm::Constant::getNullValue(vec), entry);
  }
  llvm::Function* fma = llvm::Intrinsic::getDeclaration(&m, llvm::Intrinsic::fmuladd, {vec});
  // The panels are walked by pointers bumped once per k (not k * NR
  // indexing): the loads then take constant offsets from two registers
  // without relying on LLVM's loop strength reduction, which kiln's codegen
  // pipeline leaves out (host.cpp).
  llvm::PHINode* brow = b.CreatePHI(ptr, 2, "b.row");
  brow->addIncoming(bp, entry);
  llvm::PHINode* arow = b.CreatePHI(ptr, 2, "a.row");
  arow->addIncoming(a0, entry);
  // A read prefetch into L1 (it never faults: past a panel's end it asks for whatever follows).
  auto prefetch = [&](Value* at) {
    b.CreateCall(llvm::Intrinsic::getDeclaration(&m, llvm::Intrinsic::prefetch, {ptr}),
                 {at, b.getInt32(0), b.getInt32(3), b.getInt32(1)});
  };
  // A streamed panel (GemmPlan::prefetch_b): each cache line of the row prefetch_b floats ahead.
  if (s.prefetch_b)
    for (int at = 0; at < nr; at += 16) prefetch(b.CreateConstGEP1_64(f32, brow, static_cast<uint64_t>(s.prefetch_b + at)));
  if (a_prefetch) prefetch(b.CreateGEP(f32, arow, a_prefetch));
  std::vector<Value*> bv;
  for (int v = 0; v < nv; ++v)
    bv.push_back(b.CreateAlignedLoad(vec, b.CreateConstInBoundsGEP1_64(f32, brow, static_cast<uint64_t>(v * lanes)), a4));
  std::vector<Value*> next(acc.begin(), acc.end());
  for (int i = 0; i < mr; ++i) {
    Value* splat = b.CreateVectorSplat(static_cast<unsigned>(lanes), b.CreateAlignedLoad(f32, a_at(i, arow), a4));
    for (int v = 0; v < nv; ++v) next[i * nv + v] = b.CreateCall(fma, {splat, bv[v], next[i * nv + v]});
  }
  Value* k1 = b.CreateAdd(k, b.getInt64(1), "k.next", false, true);
  k->addIncoming(k1, loop);
  brow->addIncoming(b.CreateConstInBoundsGEP1_64(f32, brow, static_cast<uint64_t>(nr), "b.next"), loop);
  arow->addIncoming(b.CreateInBoundsGEP(f32, arow, a_step, "a.next"), loop);
  for (int i = 0; i < mr * nv; ++i) acc[i]->addIncoming(next[i], loop);
  auto* br = b.CreateCondBr(b.CreateICmpSLT(k1, kc), loop, exit);
  // Unrolling the K loop by 4 hides the loop overhead behind the FMAs.
  set_unroll_count(br, 4);
  b.SetInsertPoint(exit);
  return next;
}

}  // namespace

llvm::Function* gemm_microkernel(llvm::Module& m, const GemmShape& s, const GemmHelperOptions& o) {
  const int mr = s.mr, nr = s.nr();
  std::string name = "kiln_gemm_ukr_" + std::to_string(mr) + "x" + std::to_string(nr);
  if (s.prefetch_b) name += "_pfb" + std::to_string(s.prefetch_b);
  const GemmTileEpilogue* te = o.tile_epilogue;
  if (te) name += te->suffix;
  llvm::LLVMContext& c = m.getContext();
  llvm::IRBuilder<> b(c);
  llvm::Type *i64 = b.getInt64Ty(), *f32 = b.getFloatTy(), *ptr = b.getPtrTy();
  std::vector<llvm::Type*> params{i64, ptr, ptr, ptr, i64, i64, i64, b.getInt1Ty()};
  if (te) params.insert(params.end(), te->extra.begin(), te->extra.end());
  auto* fty = llvm::FunctionType::get(b.getVoidTy(), params, false);
  llvm::Function* f = create_gemm_helper(m, name, fty, o);
  if (!f) return m.getFunction(name);
  for (unsigned a : {1u, 2u, 3u}) f->addParamAttr(a, llvm::Attribute::NoAlias);
  if (o.placement == HelperPlacement::Imported) return f;
  Value *kc = f->getArg(0), *ap = f->getArg(1), *bp = f->getArg(2), *cp = f->getArg(3);
  Value *ldc = f->getArg(4), *m_eff = f->getArg(5), *n_eff = f->getArg(6), *load_c = f->getArg(7);
  auto* entry = llvm::BasicBlock::Create(c, "entry", f);
  auto* exit = llvm::BasicBlock::Create(c, "store", f);
  b.SetInsertPoint(entry);
  if (!te) gemm_prefetch_c(b, m, s, cp, ldc);
  // (k >= 1 always: the driver never calls with kc = 0)
  std::vector<Value*> sums =
      k_loop(b, m, s, entry, exit, kc, bp, ap, b.getInt64(static_cast<uint64_t>(mr)),
             [&](int i, Value* arow) { return b.CreateConstInBoundsGEP1_64(f32, arow, static_cast<uint64_t>(i)); });
  if (te) te->store(b, f, sums, m_eff, n_eff);
  else gemm_store_tile(b, s, sums, cp, ldc, m_eff, n_eff, load_c);
  b.CreateRetVoid();
  return f;
}

llvm::Function* gemm_microkernel_a_t(llvm::Module& m, const GemmShape& s, const GemmHelperOptions& o) {
  const int mr = s.mr, nr = s.nr();
  // (B's panel prefetched never: it serves every tile of the block, in L1 after the first)
  GemmShape plain = s;
  plain.prefetch_b = 0;
  const std::string name = "kiln_gemm_ukr_at_" + std::to_string(mr) + "x" + std::to_string(nr);
  llvm::LLVMContext& c = m.getContext();
  llvm::IRBuilder<> b(c);
  llvm::Type *i64 = b.getInt64Ty(), *f32 = b.getFloatTy(), *ptr = b.getPtrTy();
  auto* fty = llvm::FunctionType::get(b.getVoidTy(), {i64, ptr, i64, ptr, ptr, i64, i64, i64, b.getInt1Ty()}, false);
  llvm::Function* f = create_gemm_helper(m, name, fty, o);
  if (!f) return m.getFunction(name);
  f->addParamAttr(4, llvm::Attribute::NoAlias);
  if (o.placement == HelperPlacement::Imported) return f;
  Value *kc = f->getArg(0), *ap = f->getArg(1), *lda = f->getArg(2), *bp = f->getArg(3), *cp = f->getArg(4);
  Value *ldc = f->getArg(5), *m_eff = f->getArg(6), *n_eff = f->getArg(7), *load_c = f->getArg(8);
  auto* entry = llvm::BasicBlock::Create(c, "entry", f);
  auto* exit = llvm::BasicBlock::Create(c, "store", f);
  b.SetInsertPoint(entry);
  gemm_prefetch_c(b, m, s, cp, ldc);
  // Row i of the tile at a depth: A[depth * lda + i]; rows past m_eff read
  // row 0 (their sums are never stored, and A may end at the tile's last row).
  std::vector<Value*> row_at;
  for (int i = 0; i < mr; ++i)
    row_at.push_back(b.CreateSelect(b.CreateICmpSLT(b.getInt64(static_cast<uint64_t>(i)), m_eff),
                                    b.getInt64(static_cast<uint64_t>(i)), b.getInt64(0)));
  // A's rows are lda apart (512 bytes for attention's 128 x 128 P^T), which
  // hardware prefetchers follow poorly: the row 16 depths on is asked for.
  std::vector<Value*> sums = k_loop(
      b, m, plain, entry, exit, kc, bp, ap, lda,
      [&](int i, Value* arow) { return b.CreateInBoundsGEP(f32, arow, row_at[static_cast<size_t>(i)]); },
      b.CreateMul(lda, b.getInt64(16)));
  gemm_store_tile(b, s, sums, cp, ldc, m_eff, n_eff, load_c);
  b.CreateRetVoid();
  return f;
}

}  // namespace kiln::codegen
