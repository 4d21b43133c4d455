// How a packed GEMM reads its operands: its plan (register tile and blocks
// for the ISA and the shape), which operand its micro-kernel reads in place
// rather than from packed panels, and the helpers each choice calls.
#include "compiler/codegen/gemm_operands.h"

#include <cstdlib>
#include <optional>

#include "compiler/codegen/emitter.h"
#include "compiler/codegen/gemm_windows_reader.h"

namespace kiln::codegen {

using namespace kiln::lower;

// Every element offset of a buffer (at the largest batch) fits 32 bits.
static bool index32(const Program& p, int buffer) {
  return numel(p.buffers.at(static_cast<size_t>(buffer)).shape, p.max_batch) < (int64_t{1} << 31);
}

// op(A)'s packing helper: from the matrix, or through its windows.
static llvm::Function* pack_a_of(llvm::Module& m, const Kernel& k, const Program& p, const GemmShape& s,
                                 const GemmHelperOptions& o) {
  const GemmSpec& g = k.gemm;
  if (!g.windows) return gemm_pack_a(m, s, g.trans_a, o);
  return gemm_pack_a_windows(m, s, *g.windows, index32(p, g.a), o);
}

llvm::Function* pack_b_of(llvm::Module& m, const Kernel& k, const Program& p, const GemmShape& s,
                          const GemmHelperOptions& o) {
  const GemmSpec& g = k.gemm;
  if (!g.windows_b) return gemm_pack_b(m, s, g.trans_b, o);
  return gemm_pack_b_windows(m, s, *g.windows_b, index32(p, g.b), o);
}

// A windowed A is read by the micro-kernel straight from the image (no packed
// panel) unless packing pays: B has many NR-column panels to spread a packed
// panel over, or a tap has so few channels that setting up each tap's row
// pointers costs more than the packing. Measured (`kiln profile` of single
// 3x3 convolutions at batch 32, 2 threads, AVX2 host, GFLOP/s packed ->
// direct): 16 channels 77 -> 170, 64 at 56x56 127 -> 172, 128 135 -> 168,
// 256 (16 panels) 175 -> 182, 512 (32 panels) 182 -> 168; 3 channels (a 7x7
// stem) 91 -> 76 tap by tap. With a window row's taps as one run of 21
// (window_run), that stem runs direct. KILN_NO_DIRECT_CONV=1 packs always, for comparisons.
static bool direct_windows(const Kernel& k, const GemmShape& s) {
  constexpr int64_t kMaxPanels = 16, kMinRun = 8;
  const GemmSpec& g = k.gemm;
  if (!g.windows || g.trans_a || window_run(*g.windows) < kMinRun) return false;
  return (g.n->ival + s.nr() - 1) / s.nr() <= kMaxPanels;
}

// A windowed B (a filter gradient's dy^T @ windows) is read by the
// micro-kernel straight from the image when each NR-column panel lies inside
// one tap (NR divides the channels per group): a panel row is then NR
// contiguous channels of one position, and positions whose tap is in the
// padding are skipped. Packing B cost as much as the multiply, each B
// element serving only the filters' few rows (resnet20's first stage: 64
// GFLOP/s packed).
static bool direct_windows_b(const Kernel& k, const GemmShape& s) {
  const GemmSpec& g = k.gemm;
  return g.windows_b && !g.trans_b && g.windows_b->cg % s.nr() == 0;
}

// A row-major A read in place by the same micro-kernel, as the windows of a
// one-pixel image per row (row r's K depths at r * lda): packing copies every
// A element once per MC block and transposes it lanes x lanes, which costs
// as much as the multiply when B has only a panel or two (a 1x1 convolution
// into 24 or 32 channels: 2x OpenBLAS's time on MobileNetV2's projections).
// Three panels still gain (MobileNetV2's 576 -> 96 projections at batch 32:
// 3.0-3.1 -> 2.7-2.8 ms, AVX-512 host); four measured no gain (char_gpt's
// 128-wide products, MobileNetV2 at batch 32).
// A triangular A too (causal attention's P @ V): each tile reads its rows'
// non-zero terms alone, as packing would. Not for a shallow K.
constexpr int64_t kInPlaceMaxPanels = 3, kInPlaceMinDepth = 8;
static bool a_read_in_place(const GemmSpec& g, const GemmShape& s) {
  return !g.windows && !g.windows_b && !g.packs_b && is_const(g.k) && g.k->ival >= kInPlaceMinDepth &&
         (g.n->ival + s.nr() - 1) / s.nr() <= kInPlaceMaxPanels;
}
static std::optional<GemmWindows> rows_in_place(const Kernel& k, const GemmShape& s) {
  const GemmSpec& g = k.gemm;
  if (g.trans_a || !a_read_in_place(g, s)) return {};
  GemmWindows w;
  w.h = w.w = w.oh = w.ow = 1;
  w.channels = g.lda;
  w.cg = g.k->ival;
  return w;
}

static DirectRead direct_read(const Kernel& k, const GemmShape& s) {
  if (std::getenv("KILN_NO_DIRECT_CONV")) return DirectRead::none;
  if (direct_windows(k, s) || rows_in_place(k, s)) return DirectRead::a;
  if (k.gemm.trans_a && a_read_in_place(k.gemm, s)) return DirectRead::a_t;
  return direct_windows_b(k, s) ? DirectRead::b : DirectRead::none;
}

// The windows a direct-A micro-kernel reads through: A's own, or its rows'.
static GemmWindows direct_a_windows(const Kernel& k, const GemmShape& s) {
  return k.gemm.windows ? *k.gemm.windows : *rows_in_place(k, s);
}

GemmShape KernelEmitter::gemm_plan(const Kernel& k) const {
  const GemmSpec& g = k.gemm;
  auto known = [](const ExprP& e) { return is_const(e) ? e->ival : int64_t{-1}; };
  GemmShape plan = plan_gemm(opts_.lanes, known(g.m), g.n->ival, known(g.k));
  // A through windows: deeper blocks (ResNet-18's 3x3 convolutions over 64
  // channels, K = 576, at batch 32: one block, not two of 288, 26 -> 24 ms).
  // A product's pack-once kernel carries its windows for this choice.
  if (g.windows && is_const(g.k)) plan.kc = std::min(g.k->ival, kGemmWindowsKC);
  // Only the packed micro-kernel prefetches B (the window kernels read it in place or find it reused).
  if (g.windows || g.windows_b) plan.prefetch_b = 0;
  // A through windows, 32 vector registers: tiles of 6 rows x 4 vectors when
  // the wider panels waste no more columns (24 accumulators, 4 vectors of B
  // and a broadcast: 29 registers). Each row broadcasts from a pointer of its
  // own; 6 x 64 loads 10 values per 24 FMAs, where 6 x 32 loads 8 per 12 and
  // 4 x 64 8 per 16. ResNet-18 at batch 32 (kiln profile, AVX-512 host):
  // 6 x 32 361 ms, 4 x 64 317-338 ms (session 27); 4 x 64 394-397 ms against
  // 6 x 64 384-386 ms in three alternated pairs on a slower hour; 5 x 64 between.
  const int64_t n = g.n->ival;
  // A batch of products of matrices takes them too (the 36 of a Winograd
  // convolution: ResNet-18 at batch 32, 230-235 -> 218 ms; char_gpt's
  // attention products unchanged, 141-144 ms either way; single products
  // measured no difference, so they keep 6 x 32).
  const bool batch_of_matrices = g.batched() && !g.windows_b && !g.trans_a;
  if ((g.windows || batch_of_matrices) && plan.lanes == 16 && n >= 64 && gemm_round_up(n, 64) == gemm_round_up(n, 32)) {
    plan.nr_vecs = 4;
    plan.mr = known(g.m) > 0 && known(g.m) < 6 ? static_cast<int>(g.m->ival) : 6;
    plan.mc = GemmShape::mc_for(plan.mr);
  }
  if (g.windows_b && g.windows_b->cg % plan.nr() != 0) {
    // A tile no wider than a tap's channels, so that B can be read directly
    // (16 channels under AVX-512: one vector of 16, not two).
    const GemmShape narrow = plan_gemm(opts_.lanes, known(g.m), g.windows_b->cg, known(g.k));
    if (g.windows_b->cg % narrow.nr() == 0) {
      plan.lanes = narrow.lanes;
      plan.nr_vecs = narrow.nr_vecs;
      plan.mr = narrow.mr;
      plan.mc = narrow.mc;
    }
  }
  return plan;
}

static PackedMicrokernels packed_microkernels(llvm::Module& m, const Kernel& k, const GemmShape& s,
                                              const GemmHelperOptions& o) {
  PackedMicrokernels u;
  if (s.prefetch_b) u.streaming = gemm_microkernel(m, s, o);
  if (!s.prefetch_b || !is_const(k.gemm.m) || k.gemm.m->ival > s.mr) {
    GemmShape plain = s;
    plain.prefetch_b = 0;
    u.plain = gemm_microkernel(m, plain, o);
  }
  return u;
}

GemmHelpers gemm_tile_epilogue_helpers_of(llvm::Module& m, const Kernel& k, const GemmShape& s,
                                          const GemmHelperOptions& o) {
  GemmHelpers h;
  h.reads = direct_read(k, s);
  if (h.reads == DirectRead::a) h.ukr = gemm_microkernel_windows(m, s, direct_a_windows(k, s), o);
  if (h.reads == DirectRead::none) h.packed = packed_microkernels(m, k, s, o);
  return h;
}

GemmHelpers gemm_helpers_of(llvm::Module& m, const Kernel& k, const Program& p, const GemmShape& s,
                            const GemmHelperOptions& o) {
  GemmHelpers h;
  h.reads = direct_read(k, s);
  if (h.reads != DirectRead::b) h.pack_b = pack_b_of(m, k, p, s, o);
  if (k.gemm.packs_b) return h;
  switch (h.reads) {
    case DirectRead::a: h.ukr = gemm_microkernel_windows(m, s, direct_a_windows(k, s), o); break;
    case DirectRead::a_t: h.ukr = gemm_microkernel_a_t(m, s, o); break;
    case DirectRead::b: h.ukr = gemm_microkernel_windows_b(m, s, *k.gemm.windows_b, k.gemm.trans_a, o); break;
    case DirectRead::none:
      h.packed = packed_microkernels(m, k, s, o);
      h.pack_a = pack_a_of(m, k, p, s, o);
      break;
  }
  return h;
}

}  // namespace kiln::codegen
