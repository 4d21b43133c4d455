// The micro-kernels of windowed GEMMs that read the image straight, instead
// of packing its windows into panels first: A's rows (a convolution and its
// stride-1 input gradient) or B's panels (a filter gradient, dy^T @ windows).
//
// Packing costs a copy of every A element per block, which pays off when the
// panel feeds many NR-column panels of B. A convolution with few output
// channels has one or two: resnet20's first stage (16 channels) spent as
// long packing A as multiplying. Here each of the tile's MR rows (output
// positions) gets, per tap, a pointer to its window's channels in the image,
// or to zeros where the tap falls in the padding or the row is past the
// matrix; the inner loop runs over the tap's channels with MR broadcasts from
// those pointers and NR/lanes vector loads of the B panel, as
// gemm_microkernel's K loop does from the packed panel. The depths come in
// the same order, one FMA each, so the result has the same bits.
#include <llvm/IR/Intrinsics.h>

#include "compiler/codegen/gemm_ir.h"
#include "compiler/codegen/gemm_windows_reader.h"

namespace kiln::codegen {

namespace {

// cg floats of zeros: what a row reads for a tap in the padding.
llvm::Constant* zero_channels(llvm::Module& m, int64_t cg) {
  const std::string name = "kiln_gemm_zero_channels_" + std::to_string(cg);
  if (llvm::GlobalVariable* g = m.getGlobalVariable(name, /*AllowInternal=*/true)) return g;
  auto* ty = llvm::ArrayType::get(llvm::Type::getFloatTy(m.getContext()), static_cast<uint64_t>(cg));
  auto* g = new llvm::GlobalVariable(m, ty, /*isConstant=*/true, llvm::GlobalValue::InternalLinkage,
                                     llvm::ConstantAggregateZero::get(ty), name);
  g->setAlignment(llvm::Align(64));
  return g;
}

// MR x nr_vecs accumulator phis of a loop body, entering with `from`.
std::vector<llvm::PHINode*> accumulators(llvm::IRBuilder<>& b, const GemmShape& s, const std::vector<llvm::PHINode*>& from,
                                         llvm::BasicBlock* pred, const char* name) {
  auto* vec = llvm::FixedVectorType::get(b.getFloatTy(), static_cast<unsigned>(s.lanes));
  std::vector<llvm::PHINode*> acc;
  for (size_t i = 0; i < static_cast<size_t>(s.mr * s.nr_vecs); ++i) {
    acc.push_back(b.CreatePHI(vec, 2, name));
    acc.back()->addIncoming(from.empty() ? llvm::Constant::getNullValue(vec) : static_cast<Value*>(from[i]), pred);
  }
  return acc;
}

// One depth of the tile: acc[r][v] += a(r) * B[v], with B's nr_vecs vectors
// at `brow` and a(r) row r's scalar at that depth. Returns the new sums.
std::vector<Value*> tile_step(llvm::IRBuilder<>& b, llvm::Module& m, const GemmShape& s, Value* brow,
                              const std::function<Value*(int)>& a_ptr, const std::vector<llvm::PHINode*>& acc) {
  const int nv = s.nr_vecs, lanes = s.lanes;
  llvm::Type* f32 = b.getFloatTy();
  auto* vec = llvm::FixedVectorType::get(f32, static_cast<unsigned>(lanes));
  llvm::Function* fma = llvm::Intrinsic::getDeclaration(&m, llvm::Intrinsic::fmuladd, {vec});
  std::vector<Value*> bv;
  for (int v = 0; v < nv; ++v)
    bv.push_back(b.CreateAlignedLoad(vec, b.CreateConstInBoundsGEP1_64(f32, brow, static_cast<uint64_t>(v * lanes)),
                                     llvm::Align(4)));
  std::vector<Value*> next(acc.begin(), acc.end());
  for (int r = 0; r < s.mr; ++r) {
    Value* splat = b.CreateVectorSplat(static_cast<unsigned>(lanes), b.CreateAlignedLoad(f32, a_ptr(r), llvm::Align(4)));
    for (int v = 0; v < nv; ++v) {
      const size_t i = static_cast<size_t>(r * nv + v);
      next[i] = b.CreateCall(fma, {splat, bv[static_cast<size_t>(v)], next[i]});
    }
  }
  return next;
}

}  // namespace

llvm::Function* gemm_microkernel_windows(llvm::Module& m, const GemmShape& s, const lower::GemmWindows& w,
                                         const GemmHelperOptions& o) {
  const int mr = s.mr, nv = s.nr_vecs, lanes = s.lanes, nr = s.nr();
  const GemmTileEpilogue* te = o.tile_epilogue;
  const std::string name = "kiln_gemm_ukr_win_" + std::to_string(mr) + "x" + std::to_string(nv) + "x" +
                           std::to_string(lanes) + "_" + w.key() + (te ? te->suffix : "");
  llvm::LLVMContext& c = m.getContext();
  llvm::IRBuilder<> b(c);
  llvm::Type *i64 = b.getInt64Ty(), *f32 = b.getFloatTy(), *ptr = b.getPtrTy();
  auto* vec = llvm::FixedVectorType::get(f32, static_cast<unsigned>(lanes));
  std::vector<llvm::Type*> params{ptr, i64, i64, i64, i64, ptr, ptr, i64, i64, b.getInt1Ty()};
  if (te) params.insert(params.end(), te->extra.begin(), te->extra.end());
  auto* fty = llvm::FunctionType::get(b.getVoidTy(), params, false);
  llvm::Function* f = create_gemm_helper(m, name, fty, o);
  if (!f) return m.getFunction(name);
  for (unsigned a : {5u, 6u}) f->addParamAttr(a, llvm::Attribute::NoAlias);
  if (o.placement == HelperPlacement::Imported) return f;
  Value *img = f->getArg(0), *row0 = f->getArg(1), *m_eff = f->getArg(2), *k0 = f->getArg(3), *kc = f->getArg(4);
  Value *bp = f->getArg(5), *cp = f->getArg(6), *ldc = f->getArg(7), *n_eff = f->getArg(8), *load_c = f->getArg(9);
  const WindowReader rd{b, w, /*index32=*/false};
  auto c64 = [&](int64_t v) { return rd.c64(v); };
  auto smin = [&](Value* x, Value* y) { return b.CreateSelect(b.CreateICmpSLT(x, y), x, y); };
  auto smax = [&](Value* x, Value* y) { return b.CreateSelect(b.CreateICmpSGT(x, y), x, y); };

  auto* entry = llvm::BasicBlock::Create(c, "entry", f);
  auto* tap_head = llvm::BasicBlock::Create(c, "tap", f);
  auto* ch_loop = llvm::BasicBlock::Create(c, "ch", f);
  auto* tap_latch = llvm::BasicBlock::Create(c, "tap.next", f);
  auto* exit = llvm::BasicBlock::Create(c, "store", f);
  b.SetInsertPoint(entry);
  if (!te) gemm_prefetch_c(b, m, s, cp, ldc);
  // A run is a tap's channels or a window row's taps (window_run). A row run
  // that crosses the image's left or right edge is copied, zeros for the
  // taps outside, into the row's slot of `edge` (on the stack) and read there.
  const bool row_run = row_runs(w);
  const int64_t run_len = window_run(w);
  const int64_t slot = (run_len + lanes - 1) / lanes * lanes;
  Value* edge = row_run ? b.CreateAlloca(llvm::ArrayType::get(f32, static_cast<uint64_t>(mr * slot))) : nullptr;
  if (edge) llvm::cast<llvm::AllocaInst>(edge)->setAlignment(llvm::Align(64));
  Value* zeros = zero_channels(m, run_len);
  // Each row's window corner, and whether the row is inside the matrix.
  std::vector<WindowReader::Corner> corner;
  std::vector<Value*> row_in;
  for (int r = 0; r < mr; ++r) {
    corner.push_back(rd.corner(b.CreateAdd(row0, c64(r)), 0));
    row_in.push_back(b.CreateICmpSLT(c64(r), m_eff));
  }
  // The runs the depths [k0, k0 + kc) cover (kc >= 1: at least one).
  Value* t_first = b.CreateUDiv(k0, c64(run_len));
  Value* t_end = b.CreateUDiv(b.CreateAdd(b.CreateAdd(k0, kc), c64(run_len - 1)), c64(run_len));
  Value* block_end = b.CreateAdd(k0, kc);
  b.CreateBr(tap_head);

  // Per run: its depths inside the block, the B rows they meet, and each
  // row's pointer to the run (zeros in the padding).
  b.SetInsertPoint(tap_head);
  llvm::PHINode* tap = b.CreatePHI(i64, 2, "tap");
  tap->addIncoming(t_first, entry);
  std::vector<llvm::PHINode*> acc = accumulators(b, s, {}, entry, "acc");
  Value* dy = b.CreateMul(row_run ? tap : b.CreateUDiv(tap, c64(w.kw)), c64(w.dh));
  Value* dx = row_run ? c64(0) : b.CreateMul(b.CreateURem(tap, c64(w.kw)), c64(w.dw));
  Value* off = b.CreateMul(b.CreateAdd(b.CreateMul(dy, c64(w.w)), dx), c64(w.channels));
  Value* first = b.CreateMul(tap, c64(run_len));  // the run's first depth
  Value* c_lo = b.CreateSub(smax(k0, first), first);
  Value* c_hi = b.CreateSub(smin(block_end, b.CreateAdd(first, c64(run_len))), first);
  std::vector<Value*> src;
  for (int r = 0; r < mr; ++r) {
    const WindowReader::Corner& at = corner[static_cast<size_t>(r)];
    Value* ih = b.CreateAdd(at.ih0, dy);
    Value* ok = b.CreateAnd(row_in[static_cast<size_t>(r)], row_run ? b.CreateICmpULT(ih, c64(w.h))
                                                                   : rd.inside(ih, b.CreateAdd(at.iw0, dx), 0));
    // (the offset of a row in the padding is never read: it may point anywhere)
    Value* in_image = b.CreateGEP(f32, img, b.CreateAdd(at.at, off));
    if (!row_run) {
      src.push_back(b.CreateSelect(ok, in_image, zeros));
      continue;
    }
    // The row's run lies across an edge: its lanes inside the image, zeros elsewhere, into the row's slot.
    Value* row_edge = b.CreateConstInBoundsGEP1_64(f32, edge, static_cast<uint64_t>(r * slot));
    Value* whole = w.w >= w.kw ? b.CreateICmpULE(at.iw0, c64(w.w - w.kw)) : b.getFalse();
    gemm_if(b, b.CreateAnd(ok, b.CreateNot(whole)), [&] {
      Value* lane_v = lane_indices(b, static_cast<unsigned>(lanes));
      for (int64_t q = 0; q < slot; q += lanes) {
        Value* e = b.CreateAdd(rd.cst(q, static_cast<unsigned>(lanes)), lane_v);
        Value* iw = b.CreateAdd(b.CreateVectorSplat(static_cast<unsigned>(lanes), at.iw0),
                                b.CreateUDiv(e, rd.cst(w.cg, static_cast<unsigned>(lanes))));
        Value* mask = b.CreateAnd(b.CreateICmpULT(e, rd.cst(run_len, static_cast<unsigned>(lanes))),
                                  b.CreateICmpULT(iw, rd.cst(w.w, static_cast<unsigned>(lanes))));
        Value* v = b.CreateMaskedLoad(vec, b.CreateGEP(f32, in_image, c64(q)), llvm::Align(4), mask,
                                      llvm::Constant::getNullValue(vec));
        b.CreateAlignedStore(v, b.CreateConstInBoundsGEP1_64(f32, row_edge, static_cast<uint64_t>(q)), llvm::Align(4));
      }
    });
    src.push_back(b.CreateSelect(ok, b.CreateSelect(whole, in_image, row_edge), zeros));
  }
  // One tap (a matrix's rows read in place, a 1x1 convolution): each A
  // element is read once, from memory, so the next tile's rows (mr positions
  // on) are prefetched a cache line at a time while this tile multiplies.
  // (Larger windows overlap: their rows are mostly in cache already, and
  // prefetching them measured 2% slower on ResNet-18.)
  if (w.kh == 1 && w.kw == 1) {
    llvm::Function* prefetch = llvm::Intrinsic::getDeclaration(&m, llvm::Intrinsic::prefetch, {ptr});
    const int64_t ahead = mr * w.sw * w.channels;
    gemm_for(b, c_lo, c_hi, 64 / 4, "pf", [&](Value* at) {
      for (int r = 0; r < mr; ++r)
        b.CreateCall(prefetch, {b.CreateGEP(f32, src[static_cast<size_t>(r)], b.CreateAdd(at, c64(ahead))),
                                b.getInt32(0), b.getInt32(3), b.getInt32(1)});
    });
  }
  // B's row for the run's depth c_lo: depth first + c_lo - k0 of the panel.
  Value* b_start = b.CreateInBoundsGEP(f32, bp, b.CreateMul(b.CreateSub(b.CreateAdd(first, c_lo), k0), c64(nr)));
  llvm::BasicBlock* run_ready = b.GetInsertBlock();  // (the edge copies split tap_head)
  b.CreateBr(ch_loop);

  b.SetInsertPoint(ch_loop);
  llvm::PHINode* ch = b.CreatePHI(i64, 2, "c");
  ch->addIncoming(c_lo, run_ready);
  llvm::PHINode* brow = b.CreatePHI(ptr, 2, "b.row");
  brow->addIncoming(b_start, run_ready);
  std::vector<llvm::PHINode*> inner = accumulators(b, s, acc, run_ready, "acc.c");
  std::vector<Value*> next =
      tile_step(b, m, s, brow, [&](int r) { return b.CreateInBoundsGEP(f32, src[static_cast<size_t>(r)], ch); }, inner);
  Value* ch1 = b.CreateAdd(ch, c64(1), "c.next", false, true);
  ch->addIncoming(ch1, ch_loop);
  brow->addIncoming(b.CreateConstInBoundsGEP1_64(f32, brow, static_cast<uint64_t>(nr), "b.next"), ch_loop);
  for (int i = 0; i < mr * nv; ++i) inner[static_cast<size_t>(i)]->addIncoming(next[static_cast<size_t>(i)], ch_loop);
  // Unrolled 8 times over a window's taps (ResNet-18, 3 x 3 over 64-512
  // channels: 388-390 -> 382 ms at batch 32, 14.1-14.4 -> 13.7-14.2 ms at
  // batch 1), 4 over one tap (a matrix's rows in place: MobileNetV2's 1 x 1
  // projections lost 1-3% at 8). AVX-512 host, alternated runs.
  set_unroll_count(b.CreateCondBr(b.CreateICmpSLT(ch1, c_hi), ch_loop, tap_latch), w.kh * w.kw > 1 ? 8 : 4);

  b.SetInsertPoint(tap_latch);
  Value* tap1 = b.CreateAdd(tap, c64(1), "tap.next", false, true);
  tap->addIncoming(tap1, tap_latch);
  for (int i = 0; i < mr * nv; ++i) acc[static_cast<size_t>(i)]->addIncoming(next[static_cast<size_t>(i)], tap_latch);
  set_loop_hints(b.CreateCondBr(b.CreateICmpSLT(tap1, t_end), tap_head, exit), Unroll::Never, /*vectorize=*/false);

  b.SetInsertPoint(exit);
  if (te) te->store(b, f, next, m_eff, n_eff);
  else gemm_store_tile(b, s, next, cp, ldc, m_eff, n_eff, load_c);
  b.CreateRetVoid();
  return f;
}

llvm::Function* gemm_microkernel_windows_b(llvm::Module& m, const GemmShape& s, const lower::GemmWindows& w,
                                           bool trans_a, const GemmHelperOptions& o) {
  const int mr = s.mr, nv = s.nr_vecs, lanes = s.lanes;
  const std::string name = "kiln_gemm_ukr_winb_" + std::string(trans_a ? "t" : "n") + std::to_string(mr) + "x" +
                           std::to_string(nv) + "x" + std::to_string(lanes) + "_" + w.key();
  llvm::LLVMContext& c = m.getContext();
  llvm::IRBuilder<> b(c);
  llvm::Type *i64 = b.getInt64Ty(), *f32 = b.getFloatTy(), *ptr = b.getPtrTy();
  auto* vec = llvm::FixedVectorType::get(f32, static_cast<unsigned>(lanes));
  auto* fty = llvm::FunctionType::get(b.getVoidTy(), {ptr, ptr, i64, i64, i64, i64, ptr, i64, i64, i64, b.getInt1Ty()},
                                      false);
  llvm::Function* f = create_gemm_helper(m, name, fty, o);
  if (!f) return m.getFunction(name);
  f->addParamAttr(6, llvm::Attribute::NoAlias);
  if (o.placement == HelperPlacement::Imported) return f;
  Value *img = f->getArg(0), *ap = f->getArg(1), *lda = f->getArg(2), *k0 = f->getArg(3), *kc = f->getArg(4);
  Value *col0 = f->getArg(5), *cp = f->getArg(6), *ldc = f->getArg(7), *m_eff = f->getArg(8);
  Value *n_eff = f->getArg(9), *load_c = f->getArg(10);
  auto c64 = [&](int64_t v) { return b.getInt64(static_cast<uint64_t>(v)); };
  auto smin = [&](Value* x, Value* y) { return b.CreateSelect(b.CreateICmpSLT(x, y), x, y); };
  auto smax = [&](Value* x, Value* y) { return b.CreateSelect(b.CreateICmpSGT(x, y), x, y); };

  auto* entry = llvm::BasicBlock::Create(c, "entry", f);
  auto* seg_head = llvm::BasicBlock::Create(c, "segment", f);
  auto* pos_pre = llvm::BasicBlock::Create(c, "positions", f);
  auto* pos_loop = llvm::BasicBlock::Create(c, "position", f);
  auto* seg_latch = llvm::BasicBlock::Create(c, "segment.next", f);
  auto* exit = llvm::BasicBlock::Create(c, "store", f);
  b.SetInsertPoint(entry);
  gemm_prefetch_c(b, m, s, cp, ldc);
  // The panel's tap and first channel (the panel lies inside one tap).
  Value* tap = b.CreateUDiv(col0, c64(w.cg));
  Value* ch0 = b.CreateURem(col0, c64(w.cg));
  Value* dy = b.CreateMul(b.CreateUDiv(tap, c64(w.kw)), c64(w.dh));
  Value* dx = b.CreateMul(b.CreateURem(tap, c64(w.kw)), c64(w.dw));
  // Output columns whose tap lies inside the image: ow in [ow_lo, ow_hi).
  Value* lo_num = b.CreateSub(c64(w.pad_left), dx);  // iw = ow * sw - pad_left + dx >= 0
  Value* ow_lo = b.CreateSelect(b.CreateICmpSLE(lo_num, c64(0)), c64(0),
                                b.CreateSDiv(b.CreateAdd(lo_num, c64(w.sw - 1)), c64(w.sw)));
  Value* hi_num = b.CreateSub(c64(w.w - 1 + w.pad_left), dx);  // iw <= w - 1
  Value* ow_hi = b.CreateSelect(b.CreateICmpSLT(hi_num, c64(0)), c64(0),
                                smin(c64(w.ow), b.CreateAdd(b.CreateSDiv(hi_num, c64(w.sw)), c64(1))));
  // Row r of op(A) at depth p: A[p * lda + r] (trans_a: dy^T) or A[r * lda + p];
  // rows past m_eff read row 0 (their sums are never stored).
  Value* step = trans_a ? lda : c64(1);
  std::vector<Value*> arow;
  for (int r = 0; r < mr; ++r) {
    Value* row = b.CreateSelect(b.CreateICmpSLT(c64(r), m_eff), c64(r), c64(0));
    arow.push_back(b.CreateGEP(f32, ap, trans_a ? row : b.CreateMul(row, lda)));
  }
  Value* p_end = b.CreateAdd(k0, kc);
  b.CreateBr(seg_head);

  // Depths are output positions; a segment is the positions of one output
  // row of one image inside [k0, k0 + kc).
  b.SetInsertPoint(seg_head);
  llvm::PHINode* p = b.CreatePHI(i64, 2, "p");
  p->addIncoming(k0, entry);
  std::vector<llvm::PHINode*> acc = accumulators(b, s, {}, entry, "acc");
  Value* ow0 = b.CreateURem(p, c64(w.ow));
  Value* rest = b.CreateUDiv(p, c64(w.ow));
  Value* oh = b.CreateURem(rest, c64(w.oh));
  Value* image = b.CreateUDiv(rest, c64(w.oh));
  Value* seg_end = smin(p_end, b.CreateAdd(b.CreateSub(p, ow0), c64(w.ow)));
  Value* ih = b.CreateAdd(b.CreateSub(b.CreateMul(oh, c64(w.sh)), c64(w.pad_top)), dy);
  // Positions whose tap falls in the padding add nothing: skipped.
  Value* lo = smax(ow0, ow_lo);
  Value* hi = smin(b.CreateAdd(ow0, b.CreateSub(seg_end, p)), ow_hi);
  b.CreateCondBr(b.CreateAnd(b.CreateICmpULT(ih, c64(w.h)), b.CreateICmpSLT(lo, hi)), pos_pre, seg_latch);

  b.SetInsertPoint(pos_pre);
  Value* iw = b.CreateAdd(b.CreateSub(b.CreateMul(lo, c64(w.sw)), c64(w.pad_left)), dx);
  Value* x0 = b.CreateGEP(
      f32, img, b.CreateAdd(b.CreateMul(b.CreateAdd(b.CreateMul(b.CreateAdd(b.CreateMul(image, c64(w.h)), ih), c64(w.w)), iw),
                                        c64(w.channels)),
                            ch0));
  Value* a0 = b.CreateMul(b.CreateAdd(b.CreateSub(p, ow0), lo), step);  // A's offset at the first position
  b.CreateBr(pos_loop);

  b.SetInsertPoint(pos_loop);
  llvm::PHINode* ow = b.CreatePHI(i64, 2, "ow");
  ow->addIncoming(lo, pos_pre);
  llvm::PHINode* xrow = b.CreatePHI(ptr, 2, "x.row");
  xrow->addIncoming(x0, pos_pre);
  llvm::PHINode* aoff = b.CreatePHI(i64, 2, "a.off");
  aoff->addIncoming(a0, pos_pre);
  std::vector<llvm::PHINode*> inner = accumulators(b, s, acc, pos_pre, "acc.p");
  std::vector<Value*> next =
      tile_step(b, m, s, xrow, [&](int r) { return b.CreateInBoundsGEP(f32, arow[static_cast<size_t>(r)], aoff); }, inner);
  Value* ow1 = b.CreateAdd(ow, c64(1), "ow.next", false, true);
  ow->addIncoming(ow1, pos_loop);
  xrow->addIncoming(b.CreateInBoundsGEP(f32, xrow, c64(w.sw * w.channels), "x.next"), pos_loop);
  aoff->addIncoming(b.CreateAdd(aoff, step, "a.next"), pos_loop);
  for (int i = 0; i < mr * nv; ++i) inner[static_cast<size_t>(i)]->addIncoming(next[static_cast<size_t>(i)], pos_loop);
  set_unroll_count(b.CreateCondBr(b.CreateICmpSLT(ow1, hi), pos_loop, seg_latch), 4);

  b.SetInsertPoint(seg_latch);
  std::vector<Value*> sums;
  for (int i = 0; i < mr * nv; ++i) {
    llvm::PHINode* merged = b.CreatePHI(vec, 2, "acc.seg");
    merged->addIncoming(acc[static_cast<size_t>(i)], seg_head);
    merged->addIncoming(next[static_cast<size_t>(i)], pos_loop);
    acc[static_cast<size_t>(i)]->addIncoming(merged, seg_latch);
    sums.push_back(merged);
  }
  p->addIncoming(seg_end, seg_latch);
  set_loop_hints(b.CreateCondBr(b.CreateICmpSLT(seg_end, p_end), seg_head, exit), Unroll::Never, /*vectorize=*/false);

  b.SetInsertPoint(exit);
  gemm_store_tile(b, s, sums, cp, ldc, m_eff, n_eff, load_c);
  b.CreateRetVoid();
  return f;
}

}  // namespace kiln::codegen
