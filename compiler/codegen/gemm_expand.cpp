// The default expansion of a gemm kernel into Loop IR: correct for every
// shape, transposes and batch-dependent M or K, cache-blocked, parallel over
// output tiles, with a contiguous innermost loop over N that the vectorizer
// turns into broadcast-A x vector-B FMAs. A packed register-blocked
// micro-kernel can replace this function without touching lowering.
#include "compiler/codegen/emitter.h"
#include "compiler/lower/gemm_epilogue.h"
#include "compiler/lower/lower_ctx.h"

namespace kiln::codegen {

using namespace kiln::lower;

// Tile sizes: an MB x NB tile of C per parallel task, KB-deep slices of B
// (KB x NB floats = 128 KiB, resident in L2 while MB rows stream over it).
constexpr int64_t kMB = 64, kNB = 256, kKB = 128;

// Element (position, column) of the window matrix of image A (GemmWindows),
// whose product starts at element a0: zero in the padding, where a clamped
// (in-bounds) pixel is read and dropped.
static E window_element(KernelBuilder& kb, const BufRef& A, const GemmWindows& w, E a0, E position, E column) {
  E x = position % E(w.ow), rest = position / E(w.ow);
  E y = rest % E(w.oh), image = rest / E(w.oh);
  E ch = column % E(w.cg), tap = column / E(w.cg);
  E ih = y * w.sh - w.pad_top + (tap / E(w.kw)) * E(w.dh), iw = x * w.sw - w.pad_left + (tap % E(w.kw)) * E(w.dw);
  E inside = (ih >= 0) && (ih < w.h) && (iw >= 0) && (iw < w.w);
  E ihc = max(E(0), min(ih, E(w.h - 1))), iwc = max(E(0), min(iw, E(w.w - 1)));
  E v = kb.load(A, a0 + ((image * w.h + ihc) * w.w + iwc) * w.channels + ch);
  return select(inside, v, lit(0, A.scalar()));
}

Kernel expand_gemm(const Kernel& gk, const Program& p) {
  const GemmSpec& g = gk.gemm;
  Kernel k;
  k.kind = KernelKind::Loops;
  k.name = gk.name;
  k.node = gk.node;
  k.origin = gk.origin;
  k.comment = gk.comment;
  k.writes = gk.writes;
  k.var_names = gk.var_names;  // the epilogue's, if any
  k.locals = gk.locals;
  KernelBuilder kb(k);
  auto ref = [&](int id) {
    const Buffer& b = p.buffers.at(static_cast<size_t>(id));
    return BufRef{id, b.dtype, b.shape};
  };
  BufRef A = ref(g.a), B = ref(g.b), C = ref(g.c);
  E M = g.m, N = g.n, K = g.k;
  int64_t ldb = g.ldb;
  int64_t c_elems = numel(C.shape, p.max_batch);
  bool parallel = c_elems >= kParallelMinElements;

  // A batch of products: product p reads its operands at p * stride; its rows
  // and tiles join the single parallel loop of each phase.
  const bool batched = g.batched();
  E P = batched ? E(g.batch) : E(1);
  auto at = [&](E p, int64_t stride) { return stride ? p * stride : E(0); };
  if (g.trans_b && !batched) {
    // op(B) = B^T: copy it to row-major [K, N] so the inner loop is contiguous.
    BufRef S = ref(g.scratch);
    kb.loop("k", 0, K, [&](E kk) {
      kb.loop("j", 0, N, [&](E j) { kb.store(S, kk * N + j, kb.load(B, j * ldb + kk)); });
    });
    B = S;
    ldb = g.n->ival;
  }
  if (!g.accumulate) {
    kb.loop("row", 0, P * M, [&](E row) {
      kb.loop("j", 0, N, [&](E j) { kb.store(C, row * g.ldc + j, lit(0, C.scalar())); });
    }, parallel);
  }
  E n_blocks = (N + (kNB - 1)) / kNB;
  E m_blocks = (M + (kMB - 1)) / kMB;
  kb.loop("tile", 0, P * (m_blocks * n_blocks), [&](E pt) {
    E p = batched ? pt / (m_blocks * n_blocks) : E(0);
    E t = batched ? pt % (m_blocks * n_blocks) : pt;
    E a0 = at(p, g.stride_a), b0 = at(p, g.stride_b), c0 = at(p, g.stride_c);
    E i0 = (t / n_blocks) * kMB, j0 = (t % n_blocks) * kNB;
    kb.loop("kb", 0, (K + (kKB - 1)) / kKB, [&](E kblk) {
      E k0 = kblk * kKB;
      kb.loop("i", i0, min(M, i0 + kMB), [&](E i) {
        kb.loop("k", k0, min(K, k0 + kKB), [&](E kk) {
          E a = kb.let("a", g.windows ? window_element(kb, A, *g.windows, a0, i, kk)
                                      : kb.load(A, a0 + (g.trans_a ? kk * g.lda + i : i * g.lda + kk)));
          kb.loop("j", j0, min(N, j0 + kNB), [&](E j) {
            E c_at = c0 + i * g.ldc + j;
            E b_at = b0 + (g.trans_b && batched ? j * ldb + kk : kk * ldb + j);
            E bv = g.windows_b ? window_element(kb, B, *g.windows_b, b0, kk, j) : kb.load(B, b_at);
            kb.store(C, c_at, kb.load(C, c_at) + a * bv);
          });
        });
      });
    });
  }, parallel);
  if (!gk.body.empty()) {
    // The epilogue, after the whole product: each element's value from C.
    Stmt epilogue = gk.body.at(0);
    Stmt& loop = element_loop(epilogue);
    const ExprP element = epilogue_element(epilogue, g.ldc);
    loop.body.insert(loop.body.begin(), assign_stmt(g.epilogue_value, load(g.c, C.scalar(), element)));
    k.body.push_back(std::move(epilogue));
  }
  return k;
}

}  // namespace kiln::codegen
