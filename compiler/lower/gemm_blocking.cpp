#include "compiler/lower/gemm_blocking.h"

#include <cstdio>

#include "compiler/lower/loop_ir.h"

namespace kiln::lower {

std::string GemmPlan::describe() const {
  char text[128];
  std::snprintf(text, sizeof text, "%dx%d tile (%d vector%s of %d), KC <= %lld, MC %lld, NC %lld", mr, nr(), nr_vecs,
                nr_vecs > 1 ? "s" : "", lanes, static_cast<long long>(kc), static_cast<long long>(mc),
                static_cast<long long>(nc));
  std::string out = text;
  if (prefetch_b) out += ", B prefetched " + std::to_string(prefetch_b * 4) + " bytes ahead in a panel's first tile";
  return out;
}

GemmPlan plan_gemm(int lanes, int64_t m, int64_t n, int64_t k) {
  GemmPlan p;
  // AVX-512 has 32 vector registers, the others kiln targets 16.
  const int registers = lanes >= 16 ? 32 : 16;
  // At most 8 columns on AVX-512: 8-lane vectors (ymm, 32 of them), not half-empty 16-lane ones.
  p.lanes = lanes >= 16 && n <= 8 ? 8 : lanes;
  lanes = p.lanes;
  // A tile no wider than the matrix: columns past n cost as many FMAs as real ones.
  p.nr_vecs = static_cast<int>(std::clamp<int64_t>((n + lanes - 1) / lanes, 1, 2));
  // Rows: as many as the registers hold beside the B vectors and a broadcast,
  // kept to what was measured fastest (kiln_bench_gemm): with two vectors a
  // row, 6 rows on both ISAs (12 x 32 on AVX-512 ran no faster at N = 64 and
  // 20% slower at 1024^3); with one vector, 8 rows (AVX2) or 12 (AVX-512,
  // whose 32 registers hold them).
  // At most `lanes` rows: A packing transposes lanes x lanes blocks.
  const int free = registers - p.nr_vecs - 2;
  p.mr = p.nr_vecs == 2 ? 6 : std::min(registers == 32 ? 12 : 8, free);
  if (lanes >= 8) p.mr = std::min(p.mr, lanes);
  // A matrix of fewer rows than the tile: a tile of exactly its rows. A few
  // tiles' worth (a filter gradient's M is the filter count): equal tiles as
  // tall as the registers allow, not full ones and a ragged last (16 rows on
  // AVX-512: one tile of 16, not 12 + 4).
  if (m > 0 && m < p.mr) p.mr = static_cast<int>(m);
  const int mr_max = std::min(free / p.nr_vecs, lanes >= 8 ? lanes : free);
  if (m > p.mr && m <= 4 * mr_max) {
    const int64_t tiles = (m + mr_max - 1) / mr_max;
    const int even = static_cast<int>((m + tiles - 1) / tiles);
    if (even > p.mr) p.mr = even;
  }
  // Depth: a KC x NR panel of B stays in L1 across a block's tiles. A K a
  // little past 256 stays one block (K = 288, a 3 x 3 x 32 convolution): a
  // thin second block would reload C and lose the fused epilogue.
  p.kc = k > 256 && k <= kGemmMatrixMaxKC ? k : 256;
  p.mc = GemmPlan::mc_for(p.mr);
  p.nc = kGemmNC;
  p.prefetch_b = kGemmPrefetchBFloats;
  return p;
}

bool gemm_takes_packed_path(const GemmSpec& g, const Program& p) {
  auto f32 = [&](int id) { return id >= 0 && gemm_packed(p.buffers.at(static_cast<size_t>(id)).dtype); };
  if (!f32(g.a) || !f32(g.b) || !f32(g.c) || !f32(g.scratch) || !is_const(g.n)) return false;
  const Shape& s = p.buffers.at(static_cast<size_t>(g.scratch)).shape;
  return s.size() == 1 && s[0] == gemm_scratch_floats(g.n->ival, g.windows != nullptr);
}

// The split over rows or columns (gemm_driver.cpp's region) gives a thread
// at most this many panels: the groups' panels then differ by one (2 vs 3, a
// third of a thread idle), so K is cut instead.
constexpr int64_t kCutKMaxPanels = 2 * kGemmSlots;

bool gemm_cuts_k(const GemmSpec& g, const GemmPlan& p) {
  if (g.batched() || g.accumulate || g.packed_b >= 0 || !is_const(g.m) || !is_const(g.n)) return false;
  const int64_t m = g.m->ival, n = g.n->ival;
  const int64_t m_panels = (m + p.mr - 1) / p.mr, n_panels = (n + p.nr() - 1) / p.nr();
  if ((gemm_splits_rows(m, n, p) ? m_panels : n_panels) > kCutKMaxPanels) return false;
  return kGemmSlots * (gemm_slot_floats(n, p) + m * n) <= gemm_scratch_floats(n, g.windows != nullptr);
}

int64_t gemm_packed_products(const GemmSpec& g) {
  return g.batched() && g.stride_b != 0 && is_const(g.batch) ? g.batch->ival : 1;
}

}  // namespace kiln::lower
