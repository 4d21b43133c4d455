// The packed f32 GEMM kernel (BLIS loop order): for each NC block of columns,
// each KC block of depth, pack op(B) once; for each MC block of rows pack
// op(A); then the micro-kernel over every MR x NR tile.
//
// Parallelism: kGemmSlots groups through ctx->parallel_for, sharing the
// product's MR x NR tiles: row panel by row panel when M is large, column
// panel by column panel when it is small (a batch of 32 or 64). A thread runs
// one contiguous chunk of groups as up to three rectangles and packs into the
// scratch slot of its first group. A product of few tiles and a deep K (a
// filter gradient: M filters x N taps, K every position of the batch) cuts K
// instead: group g sums slice g of K into a partial product of its own, and
// the caller adds the kGemmSlots partials in order. Either way every C element
// is summed in the same order for any thread count.
#include <cstdlib>
#include <optional>
#include <utility>

#include "compiler/codegen/emitter.h"
#include "compiler/codegen/gemm_ir.h"
#include "compiler/codegen/gemm_operands.h"
#include "compiler/codegen/gemm_windows_reader.h"
#include "compiler/lower/gemm_blocking.h"
#include "compiler/lower/gemm_epilogue.h"

namespace kiln::codegen {

using namespace kiln::lower;
using llvm::Value;

// Below this many multiply-adds the groups run on the calling thread.
constexpr int64_t kParallelMinFlops = int64_t{1} << 18;

bool packed_gemm_applies(const Kernel& k, const Program& p) {
  const GemmSpec& g = k.gemm;
  auto f32 = [&](int id) { return id >= 0 && gemm_packed(p.buffers.at(static_cast<size_t>(id)).dtype); };
  if (g.packs_b) return is_const(g.n) && is_const(g.k) && f32(g.b) && f32(g.packed_b);
  if (g.packed_b >= 0 && !(f32(g.packed_b) && is_const(g.k))) return false;
  return gemm_takes_packed_path(g, p);
}

// The helpers are shared by every gemm of the program (the JIT compiles them
// once, in a module of their own) and called once per tile or block: never
// inlined, so each stays one compact copy.
static GemmHelperOptions helper_options(const KernelEmitter& em, HelperPlacement placement) {
  return {placement, [&em](llvm::Function* f) {
            em.add_attributes(f);
            f->addFnAttr(llvm::Attribute::NoInline);
          }};
}

bool KernelEmitter::emit_gemm_helpers() {
  const GemmHelperOptions o = helper_options(*this, HelperPlacement::Exported);
  bool any = false;
  for (const Kernel& k : p_.kernels) {
    if (k.kind != KernelKind::Gemm || !packed_gemm_applies(k, p_)) continue;
    gemm_helpers_of(m_, k, p_, gemm_plan(k), o);  // (each helper is defined once: plans share them by name)
    any = true;
  }
  return any;
}

llvm::Function* KernelEmitter::emit_packed_gemm(const Kernel& k) {
  const GemmSpec& g = k.gemm;
  const GemmShape s = gemm_plan(k);
  const int64_t mr = s.mr, nr = s.nr();
  const int64_t nc_max = gemm_nc(g.n->ival, s), slot = gemm_slot_floats(g.n->ival, s);
  // Rows from which the rows are split across threads (gemm_splits_rows; below: the columns).
  const int64_t split_rows_from = gemm_split_rows_from(s);
  const GemmHelperOptions helpers =
      helper_options(*this, opts_.gemm_helpers_imported ? HelperPlacement::Imported : HelperPlacement::Internal);
  // A read straight from the image by the micro-kernel (or A^T read in
  // place), or B (the micro-kernel then reads A's rows in place too), or both
  // packed into panels first.
  const GemmHelpers h = gemm_helpers_of(m_, k, p_, s, helpers);
  const bool direct = h.reads == DirectRead::a, direct_b = h.reads == DirectRead::b, direct_t = h.reads == DirectRead::a_t;
  const PackedMicrokernels packed = h.packed;
  llvm::Function *ukr = h.ukr, *pack_a = h.pack_a, *pack_b = h.pack_b;
  // Causal structure (GemmSpec): A packed or its rows in place, not B in place;
  // KILN_NO_TRIANGLES=1 computes every term, for comparisons.
  const bool triangles = !direct_b && !std::getenv("KILN_NO_TRIANGLES");
  const GemmSpec::Triangle a_triangle = triangles ? g.a_triangle : GemmSpec::Triangle::none;
  const bool c_lower_read = triangles && g.c_lower_read && k.body.empty();  // (an epilogue reads every element)
  // The triangles' depth ranges count from K's start: a product that cuts K
  // (slices from pc > 0) must never run them, and does not: its K is deeper than any block.
  static_assert(kGemmCutKFrom > kGemmMaxKC);

  k_ = &k;
  scope_.clear();
  noalias_.clear();
  scalar_cache_.clear();
  llvm::Type *ptr = b_.getPtrTy(), *i64 = b_.getInt64Ty(), *f32 = b_.getFloatTy();
  auto* closure_ty = llvm::StructType::get(c_, {ptr, ptr, ptr, ptr, i64, i64, i64, ptr, ptr, ptr, i64, ptr});
  llvm::Function* epi = k.body.empty() ? nullptr : emit_gemm_epilogue(k, closure_ty);
  // One depth block: the epilogue runs on the accumulators, in micro-kernels
  // of this kernel's own (gemm_tile_epilogue.cpp), where the product is read
  // plainly (A through windows or packed, B packed; no triangles).
  GemmTileEpilogue te;
  GemmHelpers in_registers;
  // (A deeper product keeps the old path: in registers, its last block ran
  // no faster, ResNet-18's and MobileNetV2's steps 2-4% slower.)
  const bool one_block_possible = !is_const(g.k) || g.k->ival <= s.kc;
  if (epi && one_block_possible && (direct || h.reads == DirectRead::none) &&
      a_triangle == GemmSpec::Triangle::none && !c_lower_read && epilogue_fits_registers(k, s))
    in_registers = tile_epilogue_helpers(k, closure_ty, s, te, helper_options(*this, HelperPlacement::Internal));
  const bool tile_epilogue = in_registers.ukr || in_registers.packed.plain || in_registers.packed.streaming;
  auto* fty = llvm::FunctionType::get(b_.getVoidTy(), {ptr, ptr, ptr}, false);
  auto* f = llvm::Function::Create(fty, llvm::GlobalValue::ExternalLinkage, k.name, m_);
  add_attributes(f);
  f->addFnAttr(llvm::Attribute::NoInline);
  // The node it computes travels with it, as a loop kernel's does (emit_kernel.cpp).
  f->setMetadata("kiln.node", llvm::MDNode::get(c_, {llvm::MDString::get(c_, k.node), llvm::MDString::get(c_, k.origin),
                                                     llvm::MDString::get(c_, k.comment)}));
  begin_function(f);
  fn_.ctx = f->getArg(0), fn_.inputs = f->getArg(1), fn_.outputs = f->getArg(2);
  finish_preamble();
  Value *A = base_pointer(g.a), *B = base_pointer(g.b), *C = base_pointer(g.c), *S = base_pointer(g.scratch);
  // op(B)'s panels, packed once per parameter load (null: packed here, per call)
  Value* PB = g.packed_b >= 0 ? base_pointer(g.packed_b) : llvm::ConstantPointerNull::get(b_.getPtrTy());
  Value *M = emit_scalar(g.m), *N = emit_scalar(g.n), *K = emit_scalar(g.k);
  Value* products = g.batched() ? emit_scalar(g.batch) : b_.getInt64(1);
  scalar_cache_.clear();

  // The closure: operands and sizes, read back by the region, and the
  // kernel's own arguments, read back by the epilogue.
  Value* fields[] = {A, B, C, S, M, N, K, fn_.ctx, fn_.inputs, fn_.outputs, products, PB};
  Value* closure = b_.CreateAlloca(closure_ty);
  for (unsigned i = 0; i < 12; ++i) b_.CreateStore(fields[i], b_.CreateStructGEP(closure_ty, closure, i));

  // Cutting K: the partial products lie after the kGemmSlots packing slots.
  const bool split_k = gemm_cuts_k(g, s) && !std::getenv("KILN_NO_CUT_K");  // (the env: for comparisons)
  const int64_t partial_floats = split_k ? g.m->ival * g.n->ival : 0;
  auto partials_at = [&](llvm::IRBuilder<>& b, Value* scratch) {
    return b.CreateConstInBoundsGEP1_64(f32, scratch, static_cast<uint64_t>(kGemmSlots * slot));
  };

  auto* rty = llvm::FunctionType::get(b_.getVoidTy(), {ptr, i64, i64}, false);
  auto* region = llvm::Function::Create(rty, llvm::GlobalValue::InternalLinkage, k.name + "_groups", m_);
  add_attributes(region);
  region->addFnAttr(llvm::Attribute::NoInline);
  {
    llvm::IRBuilder<> b(llvm::BasicBlock::Create(c_, "entry", region));
    auto c64 = [&](int64_t v) { return b.getInt64(static_cast<uint64_t>(v)); };
    auto smin = [&](Value* x, Value* y) { return b.CreateSelect(b.CreateICmpSLT(x, y), x, y); };
    Value* cl = region->getArg(0);
    Value *begin = region->getArg(1), *end = region->getArg(2);
    Value* r[7];
    for (unsigned i = 0; i < 7; ++i)
      r[i] = b.CreateLoad(closure_ty->getElementType(i), b.CreateStructGEP(closure_ty, cl, i));
    Value *sc = r[3], *m = r[4], *n = r[5], *kk = r[6];
    Value* block = nullptr;  // an MC x NC block of the product, for the epilogue (in L2)
    if (epi) {
      block = b.CreateAlloca(llvm::ArrayType::get(f32, static_cast<uint64_t>(s.mc * nc_max)));
      llvm::cast<llvm::AllocaInst>(block)->setAlignment(llvm::Align(64));
    }
    // (accumulating into C needs C itself: such a gemm keeps the C path)
    Value* single_depth = b.CreateICmpSLE(kk, c64(s.kc));
    Value* one_block = g.accumulate ? b.getFalse() : single_depth;
    // K in blocks of equal depth, each at most KC (gemm_depth_step), a
    // constant when K is (always with B packed once: its panels follow it).
    Value* kc_step = c64(is_const(g.k) ? gemm_depth_step(g.k->ival, s) : 0);
    if (!is_const(g.k)) {
      Value* k_blocks = b.CreateSDiv(b.CreateAdd(kk, c64(s.kc - 1)), c64(s.kc));
      kc_step = b.CreateSDiv(b.CreateAdd(kk, b.CreateSub(k_blocks, c64(1))), k_blocks);
    }
    // This chunk's packing slot: its first group (chunks never share one).
    Value* bp = b.CreateInBoundsGEP(f32, sc, b.CreateMul(begin, c64(slot)));
    Value* ap = b.CreateConstInBoundsGEP1_64(f32, bp, static_cast<uint64_t>(s.kc * nc_max));
    Value* lda = c64(g.lda), *ldb = c64(g.ldb), *ldc = c64(g.ldc);
    Value* prepacked = g.packed_b >= 0 ? b.CreateLoad(ptr, b.CreateStructGEP(closure_ty, cl, 11)) : nullptr;
    Value* G = c64(kGemmSlots);
    // Groups [gb, ge) of one product: its rectangle of C, cut at MR rows or NR
    // columns, summed over depth [k_lo, k_hi). row0 places the product's rows
    // in the epilogue's flat index. A partial product (a slice of K) goes to
    // cm with leading dimension ldc_to and no epilogue.
    auto rectangle = [&](Value* gb, Value* ge, Value* a, Value* bm, Value* cm, Value* row0, Value* k_lo, Value* k_hi,
                         Value* ldc_to, bool partial) {
    llvm::Function* const epi_here = partial ? nullptr : epi;
    Value* m_panels = b.CreateSDiv(b.CreateAdd(m, c64(mr - 1)), c64(mr));
    Value* n_panels = b.CreateSDiv(b.CreateAdd(n, c64(nr - 1)), c64(nr));
    // Rows split when there are many, or at least as many row panels as
    // column panels (30 x 24 with K = 3848: five row panels, one column panel).
    // With A read in place nothing of A is packed twice: each thread reads
    // all of A (columns split) or all of B (rows split), so the smaller
    // (ResNet-18's last 3x3 convolutions at batch 1: 49 rows, 512 columns,
    // K = 4608: each thread reads half of B's 9.4 MB, not all of it), as
    // long as the columns give every group a panel as the rows would.
    Value* columns_suffice = b.CreateICmpSGE(n_panels, smin(G, m_panels));
    Value* direct_rows = b.CreateOr(b.CreateICmpSGE(m, n), b.CreateNot(columns_suffice));
    Value* split_m = b.CreateOr(b.CreateICmpSGE(m, c64(split_rows_from)),
                                direct ? direct_rows : b.CreateICmpSGE(m_panels, n_panels));
    // The groups share the product's MR x NR tiles, not whole panels: the
    // split dimension's panels are the major ones, each walked along the
    // other's (the minor). Whole panels split 5 column panels 2 + 3 over two
    // threads (a third of one idle); 20 tiles split 10 + 10. Group g takes
    // tiles [g U / G, (g + 1) U / G); a chunk of groups is then at most three
    // rectangles: the rest of its first major panel (the head), whole major
    // panels, the start of its last (the tail). Every C element still sums
    // its terms in one order, whichever thread computes it.
    Value* majors = b.CreateSelect(split_m, m_panels, n_panels);
    Value* minors = b.CreateSelect(split_m, n_panels, m_panels);
    Value* u0 = b.CreateSDiv(b.CreateMul(gb, b.CreateMul(majors, minors)), G);
    Value* u1 = b.CreateSDiv(b.CreateMul(ge, b.CreateMul(majors, minors)), G);
    Value *h = b.CreateSDiv(u0, minors), *h_at = b.CreateSRem(u0, minors);
    Value *t = b.CreateSDiv(u1, minors), *t_at = b.CreateSRem(u1, minors);
    Value* has_head = b.CreateICmpNE(h_at, c64(0));
    Value* same_major = b.CreateICmpEQ(h, t);
    Value* whole_from = b.CreateSelect(has_head, b.CreateAdd(h, c64(1)), h);
    gemm_for(b, c64(0), c64(3), 1, "piece", [&](Value* piece) {
    Value* is_head = b.CreateICmpEQ(piece, c64(0));
    Value* is_whole = b.CreateICmpEQ(piece, c64(1));
    // Piece 0, the head: major h from minor h_at (to t_at when the chunk ends in it).
    // Piece 1: majors [whole_from, t), every minor. Piece 2, the tail: major t up to minor t_at.
    Value* head_end = b.CreateSelect(same_major, t_at, minors);
    Value* tail_on = b.CreateAnd(b.CreateICmpNE(t_at, c64(0)), b.CreateNot(b.CreateAnd(has_head, same_major)));
    Value* major_lo = b.CreateSelect(is_head, h, b.CreateSelect(is_whole, whole_from, t));
    Value* major_hi = b.CreateSelect(is_head, b.CreateSelect(has_head, b.CreateAdd(h, c64(1)), h),
                                     b.CreateSelect(is_whole, b.CreateSelect(b.CreateICmpSLT(whole_from, t), t, whole_from),
                                                    b.CreateSelect(tail_on, b.CreateAdd(t, c64(1)), t)));
    Value* minor_lo = b.CreateSelect(is_head, h_at, c64(0));
    Value* minor_hi = b.CreateSelect(is_head, head_end, b.CreateSelect(is_whole, minors, t_at));
    auto span = [&](Value* lo, Value* hi, int64_t width, Value* size) {
      return std::pair<Value*, Value*>{smin(size, b.CreateMul(lo, c64(width))), smin(size, b.CreateMul(hi, c64(width)))};
    };
    // (plain locals: clang 14, the fuzz build's, cannot capture structured bindings)
    const std::pair<Value*, Value*> rows_as_major = span(major_lo, major_hi, mr, m), cols_as_major = span(major_lo, major_hi, nr, n);
    const std::pair<Value*, Value*> rows_as_minor = span(minor_lo, minor_hi, mr, m), cols_as_minor = span(minor_lo, minor_hi, nr, n);
    Value* rb = b.CreateSelect(split_m, rows_as_major.first, rows_as_minor.first);
    Value* re = b.CreateSelect(split_m, rows_as_major.second, rows_as_minor.second);
    Value* cb = b.CreateSelect(split_m, cols_as_minor.first, cols_as_major.first);
    Value* ce = b.CreateSelect(split_m, cols_as_minor.second, cols_as_major.second);
    // (an empty piece: an empty range of rows or columns runs nothing)
    re = b.CreateSelect(b.CreateICmpSLT(re, rb), rb, re);
    ce = b.CreateSelect(b.CreateICmpSLT(ce, cb), cb, ce);
    gemm_if(b, b.CreateAnd(b.CreateICmpSLT(rb, re), b.CreateICmpSLT(cb, ce)), [&] {
    gemm_for(b, cb, ce, s.nc, "jc", [&](Value* jc) {
      Value* nc = smin(c64(s.nc), b.CreateSub(ce, jc));
      gemm_for(b, k_lo, k_hi, kc_step, "pc", [&](Value* pc) {
        Value* kc = smin(kc_step, b.CreateSub(k_hi, pc));
        Value* load_c = g.accumulate ? b.getTrue() : b.CreateICmpSGT(pc, k_lo);
        // This block's panels: packed once (gemm_blocking.h lays them out), or now into the slot.
        Value* bpk = bp;
        if (prepacked)
          bpk = b.CreateInBoundsGEP(f32, prepacked, b.CreateAdd(b.CreateMul(pc, c64(gemm_round_up(g.n->ival, nr))),
                                                                b.CreateMul(jc, kc)));
        else if (!direct_b)
          b.CreateCall(pack_b, {bm, ldb, jc, nc, pc, kc, bp});
        gemm_for(b, rb, re, s.mc, "ic", [&](Value* ic) {
          Value* mc = smin(c64(s.mc), b.CreateSub(re, ic));
          // op(A) triangular (one depth block): rows [first, first + rows)
          // have non-zero terms in [from, end) of the block's depth only.
          auto term_range = [&](Value* first, Value* rows) -> std::pair<Value*, Value*> {
            if (a_triangle == GemmSpec::Triangle::lower)
              return {c64(0), b.CreateSelect(single_depth, smin(kc, b.CreateAdd(first, rows)), kc)};
            if (a_triangle == GemmSpec::Triangle::upper)  // (at least one term: rows past K's end multiply zeros)
              return {b.CreateSelect(single_depth, smin(first, b.CreateSub(kc, c64(1))), c64(0)), kc};
            return {c64(0), kc};
          };
          // The block packs its rows' terms alone: [a_from, a_from + a_depth).
          // (plain locals: clang 14, the fuzz build's, cannot capture structured bindings)
          const std::pair<Value*, Value*> a_terms = term_range(ic, mc);
          Value* a_from = a_terms.first;
          Value* a_depth = b.CreateSub(a_terms.second, a_from);
          if (pack_a) b.CreateCall(pack_a, {a, lda, ic, mc, b.CreateAdd(pc, a_from), a_depth, ap});
          gemm_for(b, c64(0), nc, nr, "jr", [&](Value* jr) {
            Value* bpanel = b.CreateInBoundsGEP(f32, bpk, b.CreateMul(jr, kc));
            Value* n_eff = smin(c64(nr), b.CreateSub(nc, jr));
            Value* col = b.CreateAdd(jc, jr);
            gemm_for(b, c64(0), mc, mr, "ir", [&](Value* ir) {
              Value* m_eff = smin(c64(mr), b.CreateSub(mc, ir));
              Value* at = b.CreateAdd(b.CreateMul(b.CreateAdd(ic, ir), ldc_to), col);
              Value* ctile = b.CreateInBoundsGEP(f32, cm, at);
              Value* row = b.CreateAdd(ic, ir);
              // The tile's own terms, [from, from + depth) of the block's (the
              // rest are zeros times B), and B's panel from depth `from` on.
              const std::pair<Value*, Value*> t_terms = term_range(row, m_eff);
              Value* from = t_terms.first;
              Value* depth = b.CreateSub(t_terms.second, from);
              Value* bfrom = b.CreateInBoundsGEP(f32, bpanel, b.CreateMul(from, c64(nr)));
              // The tile C[ic + ir .., col ..] (+)= op(A) rows x this B panel, into `to`.
              // fused: the epilogue in registers, the tile's row in its flat index and column after the operands.
              auto tile = [&](Value* to, Value* ld, Value* accumulate, bool fused = false) {
                std::vector<Value*> epi_args;
                if (fused) epi_args = {cl, b.CreateAdd(row0, row), col};
                auto with = [&](std::vector<Value*> args) {
                  args.insert(args.end(), epi_args.begin(), epi_args.end());
                  return args;
                };
                if (direct) {
                  b.CreateCall(fused ? in_registers.ukr : ukr,
                               with({a, row, m_eff, b.CreateAdd(pc, from), depth, bfrom, to, ld, n_eff, accumulate}));
                  return;
                }
                if (direct_t) {  // A^T's rows from depth pc + from on
                  Value* at = b.CreateAdd(b.CreateMul(b.CreateAdd(pc, from), lda), row);
                  b.CreateCall(ukr, {depth, b.CreateInBoundsGEP(f32, a, at), lda, bfrom, to, ld, m_eff, n_eff, accumulate});
                  return;
                }
                if (direct_b) {
                  b.CreateCall(ukr, {bm, b.CreateInBoundsGEP(f32, a, g.trans_a ? row : b.CreateMul(row, lda)), lda, pc,
                                     kc, col, to, ld, m_eff, n_eff, accumulate});
                  return;
                }
                // The packed panel holds the block's rows' terms from a_from on.
                Value* k0 = b.CreateSub(from, a_from);
                Value* apanel = b.CreateInBoundsGEP(f32, ap, b.CreateAdd(b.CreateMul(ir, a_depth), b.CreateMul(k0, c64(mr))));
                auto call = [&](llvm::Function* u) { b.CreateCall(u, with({depth, apanel, bfrom, to, ld, m_eff, n_eff, accumulate})); };
                const PackedMicrokernels& u = fused ? in_registers.packed : packed;
                if (!u.streaming) return call(u.plain);
                if (!u.plain) return call(u.streaming);
                gemm_if(b, b.CreateICmpEQ(ir, c64(0)), [&] { call(u.streaming); }, [&] { call(u.plain); });
              };
              if (!epi_here) {
                if (c_lower_read) {
                  // Nothing reads C above its diagonal: a tile wholly there is skipped.
                  gemm_if(b, b.CreateICmpSLT(col, b.CreateAdd(row, m_eff)), [&] { tile(ctile, ldc_to, load_c); });
                  return;
                }
                tile(ctile, ldc_to, load_c);
                return;
              }
              // One block of depth: the product goes to the block on the
              // stack, never to C. Deeper: C accumulates as without an epilogue.
              gemm_if(b, one_block, [&] {
                Value* at = b.CreateAdd(b.CreateMul(ir, c64(nc_max)), jr);
                tile(b.CreateInBoundsGEP(f32, block, at), c64(nc_max), b.getFalse(), tile_epilogue);
              }, [&] { tile(ctile, ldc, load_c); });
            });
          });
          if (!epi_here) return;
          // The MC x NC block of the product is final: the epilogue streams
          // over its rows (contiguous in every buffer it touches).
          Value* row = b.CreateAdd(row0, ic);
          gemm_if(b, one_block, [&] {
            if (!tile_epilogue) b.CreateCall(epi, {cl, block, c64(nc_max), row, jc, mc, nc});
          }, [&] {
            Value* cblock = b.CreateInBoundsGEP(f32, cm, b.CreateAdd(b.CreateMul(ic, ldc), jc));
            gemm_if(b, b.CreateICmpSGE(b.CreateAdd(pc, kc), kk),
                    [&] { b.CreateCall(epi, {cl, cblock, ldc, row, jc, mc, nc}); });
          });
        });
      });
    });
    });
    });
    };
    Value *a = r[0], *bm = r[1], *cm = r[2];
    if (!g.batched()) {
      auto whole = [&] { rectangle(begin, end, a, bm, cm, c64(0), c64(0), kk, ldc, false); };
      if (!split_k) {
        whole();
      } else {
        // Slice gi of K, every row and column, into partial gi (after the slots).
        gemm_if(b, b.CreateICmpSGE(kk, c64(kGemmCutKFrom)), [&] {
          gemm_for(b, begin, end, 1, "slice", [&](Value* gi) {
            Value* k_lo = b.CreateSDiv(b.CreateMul(gi, kk), G);
            Value* k_hi = b.CreateSDiv(b.CreateMul(b.CreateAdd(gi, c64(1)), kk), G);
            Value* part = b.CreateInBoundsGEP(f32, partials_at(b, sc), b.CreateMul(gi, c64(partial_floats)));
            rectangle(c64(0), G, a, bm, part, c64(0), k_lo, k_hi, n, true);
          });
        }, whole);
      }
    } else {
      // Groups of the whole batch: product p has units [p G, (p + 1) G), and
      // this chunk's groups [begin, end) cover units [begin P, end P).
      Value* P = b.CreateLoad(i64, b.CreateStructGEP(closure_ty, cl, 10));
      Value *u0 = b.CreateMul(begin, P), *u1 = b.CreateMul(end, P);
      Value* last = b.CreateSDiv(b.CreateAdd(u1, c64(kGemmSlots - 1)), G);
      gemm_for(b, b.CreateSDiv(u0, G), last, 1, "product", [&](Value* p) {
        Value* first_unit = b.CreateMul(p, G);
        Value* gb = b.CreateSub(u0, first_unit);
        gb = b.CreateSelect(b.CreateICmpSLT(gb, c64(0)), c64(0), gb);
        Value* ge = smin(b.CreateSub(u1, first_unit), G);
        auto at = [&](Value* base, int64_t stride) {
          return stride ? b.CreateInBoundsGEP(f32, base, b.CreateMul(p, c64(stride))) : base;
        };
        // Products with Bs of their own packed once: this product's panels.
        Value* shared = prepacked;
        if (prepacked && gemm_packed_products(g) > 1) prepacked = at(prepacked, gemm_packed_b_floats(g.n->ival, g.k->ival));
        rectangle(gb, ge, at(a, g.stride_a), at(bm, g.stride_b), at(cm, g.stride_c), b.CreateMul(p, m), c64(0), kk, ldc,
                  false);
        prepacked = shared;
      });
    }
    b.CreateRetVoid();
  }

  // Small products run inline; larger ones go to the thread pool.
  Value* flops = b_.CreateMul(b_.CreateMul(b_.CreateMul(M, N), K), products);
  Value* small = b_.CreateICmpSLT(flops, b_.getInt64(kParallelMinFlops));
  Value* groups = b_.getInt64(kGemmSlots);
  gemm_if(b_, small, [&] { b_.CreateCall(rty, region, {closure, b_.getInt64(0), groups}); }, [&] {
    Value* pf = b_.CreateLoad(ptr, b_.CreateStructGEP(context_type(), fn_.ctx, 4));
    Value* pool = b_.CreateLoad(ptr, b_.CreateStructGEP(context_type(), fn_.ctx, 5));
    auto* pf_ty = llvm::FunctionType::get(b_.getVoidTy(), {ptr, i64, ptr, ptr}, false);
    b_.CreateCall(pf_ty, pf, {pool, groups, region, closure});
  });
  if (split_k) {
    gemm_if(b_, b_.CreateICmpSGE(K, b_.getInt64(kGemmCutKFrom)),
            [&] { emit_split_k_sum(partials_at(b_, S), partial_floats, C, epi, closure); });
  }
  b_.CreateRetVoid();
  k_ = nullptr;
  return f;
}

// The partial products of a gemm that cut K, added in slice order into the
// first (vectors of the kernels' width, then a scalar tail); then the sum goes
// through the epilogue, or row by row to C.
void KernelEmitter::emit_split_k_sum(Value* partials, int64_t floats, Value* C, llvm::Function* epi, Value* closure) {
  const GemmSpec& g = k_->gemm;
  llvm::Type* f32 = b_.getFloatTy();
  auto c64 = [&](int64_t v) { return b_.getInt64(static_cast<uint64_t>(v)); };
  const int64_t lanes = opts_.lanes, vec_end = floats / lanes * lanes;
  auto add_slices = [&](Value* i, llvm::Type* t) {
    Value* sum = b_.CreateAlignedLoad(t, b_.CreateInBoundsGEP(f32, partials, i), llvm::Align(4));
    for (int64_t slice = 1; slice < kGemmSlots; ++slice) {
      Value* at = b_.CreateInBoundsGEP(f32, partials, b_.CreateAdd(i, c64(slice * floats)));
      sum = b_.CreateFAdd(sum, b_.CreateAlignedLoad(t, at, llvm::Align(4)));
    }
    b_.CreateAlignedStore(sum, b_.CreateInBoundsGEP(f32, partials, i), llvm::Align(4));
  };
  auto* vt = llvm::FixedVectorType::get(f32, static_cast<unsigned>(lanes));
  gemm_for(b_, c64(0), c64(vec_end), lanes, "sum", [&](Value* i) { add_slices(i, vt); });
  gemm_for(b_, c64(vec_end), c64(floats), 1, "sum_tail", [&](Value* i) { add_slices(i, f32); });
  const int64_t m = g.m->ival, n = g.n->ival;
  if (epi) {
    b_.CreateCall(epi, {closure, partials, c64(n), c64(0), c64(0), c64(m), c64(n)});
    return;
  }
  gemm_for(b_, c64(0), c64(m), 1, "row", [&](Value* r) {
    b_.CreateMemCpy(b_.CreateInBoundsGEP(f32, C, b_.CreateMul(r, c64(g.ldc))), llvm::MaybeAlign(4),
                    b_.CreateInBoundsGEP(f32, partials, b_.CreateMul(r, c64(n))), llvm::MaybeAlign(4), c64(n * 4));
  });
}

llvm::Function* KernelEmitter::emit_pack_b(const Kernel& k) {
  const GemmSpec& g = k.gemm;
  const GemmShape s = gemm_plan(k);  // the product's plan: its sizes are the pack's
  llvm::Function* pack_b = pack_b_of(
      m_, k, p_, s, helper_options(*this, opts_.gemm_helpers_imported ? HelperPlacement::Imported : HelperPlacement::Internal));
  k_ = &k;
  scope_.clear();
  noalias_.clear();
  scalar_cache_.clear();
  llvm::Type* ptr = b_.getPtrTy();
  auto* f = llvm::Function::Create(llvm::FunctionType::get(b_.getVoidTy(), {ptr, ptr, ptr}, false),
                                   llvm::GlobalValue::ExternalLinkage, k.name, m_);
  add_attributes(f);
  f->setMetadata("kiln.node", llvm::MDNode::get(c_, {llvm::MDString::get(c_, k.node), llvm::MDString::get(c_, k.origin),
                                                     llvm::MDString::get(c_, k.comment)}));
  begin_function(f);
  fn_.ctx = f->getArg(0), fn_.inputs = f->getArg(1), fn_.outputs = f->getArg(2);
  finish_preamble();
  Value *B = base_pointer(g.b), *P = base_pointer(g.packed_b);
  scalar_cache_.clear();
  // The depth blocks the driver cuts, each packed whole: all columns, in NR-column panels.
  const int64_t K = g.k->ival, N = g.n->ival;
  const int64_t kc_step = gemm_depth_step(K, s), n_padded = gemm_round_up(N, s.nr());
  auto c64 = [&](int64_t v) { return b_.getInt64(static_cast<uint64_t>(v)); };
  auto f32_at = [&](Value* base, int64_t floats) {
    return b_.CreateConstInBoundsGEP1_64(b_.getFloatTy(), base, static_cast<uint64_t>(floats));
  };
  // Each product's B (one when they share it) into its own panels.
  for (int64_t product = 0; product < gemm_packed_products(g); ++product) {
    Value* from = f32_at(B, product * g.stride_b);
    Value* to = f32_at(P, product * gemm_packed_b_floats(N, K));
    for (int64_t pc = 0; pc < K; pc += kc_step) {
      const int64_t kc = std::min(kc_step, K - pc);
      b_.CreateCall(pack_b, {from, c64(g.ldb), c64(0), c64(N), c64(pc), c64(kc), f32_at(to, pc * n_padded)});
    }
  }
  b_.CreateRetVoid();
  k_ = nullptr;
  return f;
}

}  // namespace kiln::codegen

namespace kiln::codegen {

// void epi(ptr closure, ptr tile, i64 ldt, i64 row0, i64 col0, i64 m, i64 n):
// the epilogue loop's body for each element (row0 + r, col0 + c), r < m, c < n,
// of the product, whose value is tile[r * ldt + c]. Each row runs as vectors
// (the loop's vector plan) and a scalar tail.
llvm::Function* KernelEmitter::emit_gemm_epilogue(const Kernel& k, llvm::StructType* closure_ty) {
  using namespace kiln::lower;
  // A flat loop over the elements, or rows x columns (gemm_epilogue.h).
  const Stmt& outer = k.body.at(0);
  const bool nest = is_rows_by_columns(outer);
  const Stmt& loop = element_loop(outer);
  const int value = k.gemm.epilogue_value;
  auto plan = plan_vector_loop(loop);
  llvm::Type *ptr = b_.getPtrTy(), *i64 = b_.getInt64Ty(), *f32 = b_.getFloatTy();
  auto* fty = llvm::FunctionType::get(b_.getVoidTy(), {ptr, ptr, i64, i64, i64, i64, i64}, false);
  auto* f = llvm::Function::Create(fty, llvm::GlobalValue::InternalLinkage, k.name + "_epilogue", m_);
  add_attributes(f);
  // Called once per MC x NC block: inlined, it would be copied into both
  // branches of the driver and unswitched with it (compile time, no speed).
  f->addFnAttr(llvm::Attribute::NoInline);
  begin_function(f);
  load_kernel_args(closure_ty, f->getArg(0), 7);
  Value *tile = f->getArg(1), *ldt = f->getArg(2), *row0 = f->getArg(3), *col0 = f->getArg(4);
  Value *m = f->getArg(5), *n = f->getArg(6);
  // (the epilogue's vectors are the kernels' width, which a narrow tile's may not be)
  const int64_t lanes = opts_.lanes, ldc = k.gemm.ldc;
  Value* vec_end = plan ? b_.CreateSub(n, b_.CreateSRem(n, b_.getInt64(static_cast<uint64_t>(lanes)))) : b_.getInt64(0);
  gemm_for(b_, b_.getInt64(0), m, 1, "er", [&](Value* r) {
    Value* trow = b_.CreateInBoundsGEP(f32, tile, b_.CreateMul(r, ldt));
    // One vector of the row from column c (mask: its lanes inside the row; null: all).
    auto vector_step = [&](Value* c, Value* mask) {
      auto* vt = llvm::FixedVectorType::get(f32, static_cast<unsigned>(lanes));
      Value* at = b_.CreateInBoundsGEP(f32, trow, c);
      Value* product = mask ? static_cast<Value*>(b_.CreateMaskedLoad(vt, at, llvm::Align(4), mask,
                                                                      llvm::Constant::getNullValue(vt)))
                            : b_.CreateAlignedLoad(vt, at, llvm::Align(4));
      emit_epilogue_vector(k, *plan, b_.CreateAdd(row0, r), b_.CreateAdd(col0, c), product, mask);
    };
    if (plan) {
      gemm_for(b_, b_.getInt64(0), vec_end, lanes, "ev", [&](Value* c) { vector_step(c, nullptr); });
      // The row's last columns, fewer than lanes, as one masked vector.
      gemm_if(b_, b_.CreateICmpSLT(vec_end, n), [&] { vector_step(vec_end, lane_mask(b_.CreateSub(n, vec_end))); });
      return;
    }
    // (no vector plan) Each element: the loop variable its flat index, or (nest) its column.
    Value* first = col0;
    if (nest) fn_.vars[static_cast<size_t>(outer.var)] = b_.CreateAdd(row0, r);
    else first = b_.CreateAdd(b_.CreateMul(b_.CreateAdd(row0, r), b_.getInt64(static_cast<uint64_t>(ldc))), col0);
    gemm_for(b_, vec_end, n, 1, "ec", [&](Value* c) {
      fn_.vars[static_cast<size_t>(loop.var)] = b_.CreateAdd(first, c);
      b_.CreateStore(b_.CreateLoad(f32, b_.CreateInBoundsGEP(f32, trow, c)), fn_.locals.at(static_cast<size_t>(value)));
      emit_stmts(loop.body);
    });
  });
  b_.CreateRetVoid();
  return f;
}

}  // namespace kiln::codegen
