// Packing op(A) straight from an image through convolution windows (implicit
// im2col, lower::GemmWindows): the panels gemm_pack_a would make from the
// im2col matrix, without that matrix. A 3x3 convolution's im2col matrix is 9
// times its input; written and read back, it made the GEMMs of small-channel
// convolutions memory-bound (resnet20's first stage ran at 45 GFLOP/s against
// 110 for its last).
//
// Per tap, a row's channels are contiguous in the image (with one group and
// no horizontal dilation, a window row's taps together): lanes of them per
// row are loaded and transposed in registers, as gemm_pack_a does for a
// row-major matrix; rows whose tap falls in the padding, or past the matrix,
// load nothing and pack zeros. With fewer lanes than rows (SSE), one masked
// gather of MR lanes per depth. (A transposed window matrix, a filter
// gradient's, would gather every element: conv_lowering.cpp keeps im2col there.)
#include "compiler/codegen/gemm_ir.h"
#include "compiler/codegen/gemm_windows_reader.h"

namespace kiln::codegen {

using llvm::Value;

namespace {

// A packing helper's function (gemm_pack_a's signature); null body when it
// exists already or is imported.
llvm::Function* begin_helper(llvm::Module& m, llvm::IRBuilder<>& b, const std::string& name, const GemmHelperOptions& o,
                             bool* build) {
  llvm::Type *i64 = b.getInt64Ty(), *ptr = b.getPtrTy();
  auto* fty = llvm::FunctionType::get(b.getVoidTy(), {ptr, i64, i64, i64, i64, i64, ptr}, false);
  llvm::Function* f = create_gemm_helper(m, name, fty, o);
  *build = f && o.placement != HelperPlacement::Imported;
  if (!f) return m.getFunction(name);
  if (!*build) return f;
  f->addParamAttr(0, llvm::Attribute::NoAlias);
  f->addParamAttr(6, llvm::Attribute::NoAlias);
  b.SetInsertPoint(llvm::BasicBlock::Create(m.getContext(), "entry", f));
  return f;
}

}  // namespace

llvm::Function* gemm_pack_a_windows(llvm::Module& m, const GemmShape& s, const lower::GemmWindows& w, bool index32,
                                    const GemmHelperOptions& o) {
  std::string name = std::string("kiln_gemm_pack_a_win") + (index32 ? "_i32" : "") + "_" +
                     std::to_string(s.mr) + "_" + w.key();
  llvm::IRBuilder<> b(m.getContext());
  bool build = false;
  llvm::Function* f = begin_helper(m, b, name, o, &build);
  if (!build) return f;
  Value *src = f->getArg(0), *r0 = f->getArg(2), *n = f->getArg(3), *k0 = f->getArg(4), *kc = f->getArg(5);
  Value* dst = f->getArg(6);
  llvm::Type* f32 = b.getFloatTy();
  const WindowReader rd{b, w, index32};
  const unsigned MR = static_cast<unsigned>(s.mr), L = static_cast<unsigned>(s.lanes);
  auto* vl = llvm::FixedVectorType::get(f32, L);
  auto c64 = [&](int64_t v) { return rd.c64(v); };
  auto splat = [&](Value* x) { return b.CreateVectorSplat(MR, x); };
  Value *lanes = lane_indices(b, MR), *lanes_l = lane_indices(b, L);
  using Corner = WindowReader::Corner;
  // Runs of depths contiguous in the image (window_run): a row run's lanes
  // are checked against the image's edges one by one.
  const bool row_run = row_runs(w);
  const int64_t run_len = window_run(w);
  // The runs the depth block [k0, k0 + kc) covers: body(run) with the run's
  // row and column offsets from a window's corner (dx 0 for a row run), its
  // element offset, its depths inside the block and where its first depth's
  // MR floats go in `panel`.
  struct Run {
    Value *dy, *dx, *off, *c_lo, *c_hi, *out;
  };
  auto for_each_run = [&](Value* panel, const std::function<void(const Run&)>& body) {
    Value* t_first = b.CreateUDiv(k0, c64(run_len));
    Value* t_end = b.CreateUDiv(b.CreateAdd(b.CreateAdd(k0, kc), c64(run_len - 1)), c64(run_len));
    gemm_for(b, t_first, t_end, 1, "run", [&](Value* run) {
      Run t;
      t.dy = b.CreateMul(row_run ? run : b.CreateUDiv(run, c64(w.kw)), c64(w.dh));
      t.dx = row_run ? c64(0) : b.CreateMul(b.CreateURem(run, c64(w.kw)), c64(w.dw));
      t.off = b.CreateMul(b.CreateAdd(b.CreateMul(t.dy, c64(w.w)), t.dx), c64(w.channels));
      Value* first = b.CreateMul(run, c64(run_len));  // the run's first depth
      t.c_lo = b.CreateSub(b.CreateSelect(b.CreateICmpSGT(k0, first), k0, first), first);
      Value* last = b.CreateAdd(first, c64(run_len));
      Value* block_end = b.CreateAdd(k0, kc);
      t.c_hi = b.CreateSub(b.CreateSelect(b.CreateICmpSLT(block_end, last), block_end, last), first);
      t.out = b.CreateGEP(f32, panel, b.CreateMul(b.CreateSub(first, k0), c64(MR)));
      body(t);
    });
  };

  gemm_for(b, c64(0), n, s.mr, "i", [&](Value* i) {
    Value* panel = b.CreateInBoundsGEP(f32, dst, b.CreateMul(i, kc));
    Value* row_ok = b.CreateICmpSLT(lanes, splat(b.CreateSub(n, i)));  // rows past n pack as zero
    Value* rows = b.CreateAdd(splat(b.CreateAdd(r0, i)), lanes);
    if (MR <= L) {
      // Rows are output positions; the block's depths are taps (cg channels
      // each). Per tap, each row's channels are contiguous in the image: lanes
      // of them per row (a masked load; none for a row whose tap is in the
      // padding), transposed in registers into lanes depths of MR rows, stored
      // as full vectors at MR-float steps in depth order (each store's tail is
      // overwritten by the next; the last spills into the next panel or the
      // slot's padding, as gemm_pack_a's).
      std::vector<Corner> at;
      std::vector<Value*> ok_row;
      for (unsigned r = 0; r < MR; ++r) {
        at.push_back(rd.corner(b.CreateAdd(b.CreateAdd(r0, i), c64(r)), 0));
        ok_row.push_back(b.CreateICmpSLT(b.CreateAdd(i, c64(r)), n));
      }
      for_each_run(panel, [&](const Run& t) {
        std::vector<Value*> row_src, row_ok;
        for (unsigned r = 0; r < MR; ++r) {
          Value* ih = b.CreateAdd(at[r].ih0, t.dy);
          // A row run is checked column by column below; here only its row.
          Value* ok = b.CreateAnd(ok_row[r], row_run ? b.CreateICmpULT(ih, c64(w.h))
                                                      : rd.inside(ih, b.CreateAdd(at[r].iw0, t.dx), 0));
          row_ok.push_back(ok);
          // (A row run's start may lie left of the image: plain GEP, those lanes are masked off.)
          row_src.push_back(b.CreateGEP(f32, src, b.CreateSelect(ok, b.CreateAdd(at[r].at, t.off), c64(0))));
        }
        gemm_for(b, t.c_lo, t.c_hi, static_cast<int64_t>(L), "ch", [&](Value* ch) {
          Value* left = b.CreateSub(t.c_hi, ch);
          Value* count = b.CreateSelect(b.CreateICmpSLT(left, c64(L)), left, c64(L));
          // Each lane's tap column within a row run, the same for every row.
          Value* lane_dx = row_run ? b.CreateUDiv(b.CreateAdd(b.CreateVectorSplat(L, ch), lanes_l), rd.cst(w.cg, L)) : nullptr;
          std::vector<Value*> v;
          for (unsigned r = 0; r < L; ++r) {
            if (r >= MR) {
              v.push_back(v.back());
              continue;
            }
            Value* mask = b.CreateICmpSLT(lanes_l, b.CreateVectorSplat(L, b.CreateSelect(row_ok[r], count, c64(0))));
            if (row_run)
              mask = b.CreateAnd(mask, b.CreateICmpULT(b.CreateAdd(b.CreateVectorSplat(L, at[r].iw0), lane_dx),
                                                       rd.cst(w.w, L)));
            v.push_back(b.CreateMaskedLoad(vl, b.CreateGEP(f32, row_src[r], ch), llvm::Align(4), mask,
                                           llvm::Constant::getNullValue(vl)));
          }
          v = transpose_lanes(b, v);
          Value* depth0 = b.CreateGEP(f32, t.out, b.CreateMul(ch, c64(MR)));
          for (unsigned t = 0; t < L; ++t) {
            Value* to = b.CreateConstGEP1_64(f32, depth0, uint64_t{t} * MR);
            if (t == 0) {
              b.CreateAlignedStore(v[t], to, llvm::Align(4));
              continue;
            }
            gemm_if(b, b.CreateICmpULT(c64(t), count), [&] { b.CreateAlignedStore(v[t], to, llvm::Align(4)); });
          }
        });
      });
      return;
    }
    // Fewer lanes than rows (SSE): one gather per depth.
    {
      Corner at = rd.corner(rows, MR);
      for_each_run(panel, [&](const Run& t) {
        Value* ih = b.CreateAdd(at.ih0, splat(t.dy));
        Value* off = b.CreateAdd(at.at, splat(t.off));
        gemm_for(b, t.c_lo, t.c_hi, 1, "ch", [&](Value* ch) {
          Value* dx = row_run ? b.CreateUDiv(ch, c64(w.cg)) : t.dx;
          Value* mask = b.CreateAnd(row_ok, rd.inside(ih, b.CreateAdd(at.iw0, splat(dx)), MR));
          Value* v = rd.gather(b.CreateGEP(f32, src, ch), off, mask, MR);
          b.CreateAlignedStore(v, b.CreateInBoundsGEP(f32, t.out, b.CreateMul(ch, c64(MR))), llvm::Align(4));
        });
      });
    }
  });
  b.CreateRetVoid();
  return f;
}

llvm::Function* gemm_pack_b_windows(llvm::Module& m, const GemmShape& s, const lower::GemmWindows& w, bool index32,
                                    const GemmHelperOptions& o) {
  std::string name = std::string("kiln_gemm_pack_b_win") + (index32 ? "_i32" : "") + "_" +
                     std::to_string(s.nr()) + "_" + w.key();
  llvm::IRBuilder<> b(m.getContext());
  bool build = false;
  llvm::Function* f = begin_helper(m, b, name, o, &build);
  if (!build) return f;
  Value *src = f->getArg(0), *j0 = f->getArg(2), *n = f->getArg(3), *k0 = f->getArg(4), *kc = f->getArg(5);
  Value* dst = f->getArg(6);
  llvm::Type* f32 = b.getFloatTy();
  const WindowReader rd{b, w, index32};
  const unsigned L = static_cast<unsigned>(s.lanes), NR = static_cast<unsigned>(s.nr());
  auto* vl = llvm::FixedVectorType::get(f32, L);
  auto c64 = [&](int64_t v) { return rd.c64(v); };
  auto splat = [&](Value* x) { return b.CreateVectorSplat(L, x); };
  auto smin = [&](Value* x, Value* y) { return b.CreateSelect(b.CreateICmpSLT(x, y), x, y); };
  auto smax = [&](Value* x, Value* y) { return b.CreateSelect(b.CreateICmpSGT(x, y), x, y); };
  Value* lanes = lane_indices(b, L);
  // Columns of op(B) are (tap, channel) pairs, depth runs over output
  // positions: dst[q*NR*kc + k*NR + c] = window element (k0 + k, j0 + q*NR + c).
  // Each vector of a panel whose columns share one tap is one (masked)
  // contiguous load per position (C = 16: every vector); one spanning taps
  // (3 channels) gathers its lanes.
  gemm_for(b, c64(0), n, NR, "j", [&](Value* j) {
    Value* panel = b.CreateInBoundsGEP(f32, dst, b.CreateMul(j, kc));
    struct Piece {
      Value *count, *one_tap;
      WindowReader::Tap first, each;  // the first column's tap; every lane's
      Value* lane_ok;
    };
    std::vector<Piece> pieces;
    for (unsigned h = 0; h < NR / L; ++h) {
      Value* at = b.CreateAdd(j, c64(h * L));
      Value* count = smax(c64(0), smin(c64(L), b.CreateSub(n, at)));  // columns past n pack as zero
      Value* col = b.CreateAdd(j0, at);
      Value* channel = b.CreateURem(col, c64(w.cg));
      Value* one_tap = b.CreateICmpSLE(b.CreateAdd(channel, count), c64(w.cg));
      pieces.push_back({count, one_tap, rd.tap(col, 0), rd.tap(b.CreateAdd(splat(col), lanes), L),
                        b.CreateICmpSLT(lanes, splat(count))});
    }
    gemm_for(b, c64(0), kc, 1, "k", [&](Value* k) {
      WindowReader::Corner at = rd.corner(b.CreateAdd(k0, k), 0);
      Value* row = b.CreateInBoundsGEP(f32, panel, b.CreateMul(k, c64(NR)));
      for (unsigned h = 0; h < pieces.size(); ++h) {
        const Piece& pc = pieces[h];
        Value* out = b.CreateConstInBoundsGEP1_64(f32, row, uint64_t{h} * L);
        gemm_if(b, pc.one_tap, [&] {
          Value* ok = rd.inside(b.CreateAdd(at.ih0, pc.first.dy), b.CreateAdd(at.iw0, pc.first.dx), 0);
          Value* mask = b.CreateICmpSLT(lanes, splat(b.CreateSelect(ok, pc.count, c64(0))));
          Value* from = b.CreateGEP(f32, src, b.CreateSelect(ok, b.CreateAdd(at.at, pc.first.off), c64(0)));
          Value* v = b.CreateMaskedLoad(vl, from, llvm::Align(4), mask, llvm::Constant::getNullValue(vl));
          b.CreateAlignedStore(v, out, llvm::Align(4));
        }, [&] {
          Value* ih = b.CreateAdd(splat(at.ih0), pc.each.dy), *iw = b.CreateAdd(splat(at.iw0), pc.each.dx);
          Value* mask = b.CreateAnd(pc.lane_ok, rd.inside(ih, iw, L));
          b.CreateAlignedStore(rd.gather(b.CreateGEP(f32, src, at.at), pc.each.off, mask, L), out, llvm::Align(4));
        });
      }
    });
  });
  b.CreateRetVoid();
  return f;
}

}  // namespace kiln::codegen
