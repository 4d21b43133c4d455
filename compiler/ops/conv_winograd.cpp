// 3x3 stride-1 convolutions as Winograd F(4x4, 3x3) (Lavin and Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2016): each 4x4 block of
// output pixels (a tile) comes from the 6x6 block of input pixels under it
// through 36 products per (input, output) channel pair instead of 144:
//
//   U [36, C, F]     = G g G^T      per (c, f): the filter (in predict once
//                                   per parameter load: hoist_param_kernels)
//   V [36, tiles, C] = B^T d B      per (tile, c): the input
//   M [36, tiles, F]: 36 GEMMs      M[xi] = V[xi] @ U[xi]
//   y                = A^T m A      per (tile, f): 16 pixels a tile
//
// The GEMMs are the packed GEMM's batch of products (a quarter of the direct
// convolution's multiply-adds); the transforms are loops vectorized over the
// channels. The output transform says each pixel is final, so a bias, an
// activation or a residual add after the convolution runs on it in cache
// (row_epilogue.h). Interpolation points 0, +-1, +-2: in f32 the result
// differs from the direct sum by about 1e-5 of its magnitude. The transforms
// mix a tile's pixels: an inf or NaN input reaches all 16 outputs of its
// tiles, not only those whose windows hold it (as in other Winograd kernels).
// conv2d and the stride-1 input gradient (a convolution of dy with the
// flipped filter) take it.
#include <cstdlib>

#include "compiler/ops/conv_lowering.h"

namespace kiln {

using namespace lower;

namespace {

constexpr double kBT[6 * 6] = {4, 0, -5, 0,  1, 0,  //
                               0, -4, -4, 1, 1, 0,  //
                               0, 4, -4, -1, 1, 0,  //
                               0, -2, -1, 2, 1, 0,  //
                               0, 2, -1, -2, 1, 0,  //
                               0, 4, 0, -5, 0,  1};
constexpr double kG[6 * 3] = {1.0 / 4,  0,         0,          //
                              -1.0 / 6, -1.0 / 6,  -1.0 / 6,   //
                              -1.0 / 6, 1.0 / 6,   -1.0 / 6,   //
                              1.0 / 24, 1.0 / 12,  1.0 / 6,    //
                              1.0 / 24, -1.0 / 12, 1.0 / 6,    //
                              0,        0,         1};
constexpr double kAT[4 * 6] = {1, 1, 1,  1, 1,  0,  //
                               0, 1, -1, 2, -2, 0,  //
                               0, 1, 1,  4, 4,  0,  //
                               0, 1, -1, 8, -8, 1};
constexpr int64_t kTile = 4, kPatch = 6, kProducts = kPatch * kPatch, kPlaneSkew = 16;

// sum_r coef(r) * value(r) over r < n, zero coefficients skipped and +-1 as
// an add or a subtract.
template <class Coef, class Value>
E combine(int n, Coef coef, Value value, Scalar s) {
  E sum;
  for (int r = 0; r < n; ++r) {
    const double c = coef(r);
    if (c == 0) continue;
    if (!sum.p) sum = c == 1 ? value(r) : c == -1 ? -value(r) : lit(c, s) * value(r);
    else if (c == 1) sum = sum + value(r);
    else if (c == -1) sum = sum - value(r);
    else sum = sum + lit(c, s) * value(r);
  }
  return sum.p ? sum : lit(0, s);
}

// T d T^T for an n x n block d (row-major) and an m x n matrix T: the m x m
// result, row-major; the rows of T d are locals.
std::vector<E> two_sided(KernelBuilder& k, const double* T, int m, int n, const std::vector<E>& d, Scalar s) {
  std::vector<E> rows(static_cast<size_t>(m * n));
  for (int i = 0; i < m; ++i)
    for (int col = 0; col < n; ++col)
      rows[static_cast<size_t>(i * n + col)] =
          k.let("t", combine(n, [&](int r) { return T[i * n + r]; }, [&](int r) { return d[static_cast<size_t>(r * n + col)]; }, s));
  std::vector<E> out(static_cast<size_t>(m * m));
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < m; ++j)
      out[static_cast<size_t>(i * m + j)] =
          combine(n, [&](int col) { return T[j * n + col]; }, [&](int col) { return rows[static_cast<size_t>(i * n + col)]; }, s);
  return out;
}

// Images in a call at most: the largest batch when x's first dimension is open.
int64_t max_images(const LowerCtx& c, const BufRef& x) { return x.shape[0] == kOpenDim ? c.max_batch() : x.shape[0]; }

BufRef scratch(LowerCtx& c, const std::string& what, Shape shape) {
  return {c.scratch(what + " " + c.node.name, DType::f32, shape), DType::f32, shape};
}

}  // namespace

bool winograd_applies(const LowerCtx& c, const ConvGeometry& g, int64_t in_channels, int64_t out_channels) {
  if (std::getenv("KILN_NO_WINOGRAD") || c.out.dtype != DType::f32 || c.in[0].dtype != DType::f32 ||
      c.in[1].dtype != DType::f32)
    return false;
  if (g.kh != 3 || g.kw != 3 || g.sh != 1 || g.sw != 1 || g.dh != 1 || g.dw != 1 || g.groups != 1) return false;
  // Narrow products run the micro-kernel below its width; few tiles (at the
  // largest batch) leave the filter's transform, 4x the filter, unpaid.
  const int64_t tiles = max_images(c, c.in[0]) * ((g.oh + kTile - 1) / kTile) * ((g.ow + kTile - 1) / kTile);
  return in_channels >= 16 && out_channels >= 16 && tiles >= 32;
}

void lower_winograd_conv(LowerCtx& c, const ConvGeometry& g, const BufRef& x, const BufRef& w, const BufRef& y) {
  const int64_t C = x.shape[3], F = y.shape[3], th = (g.oh + kTile - 1) / kTile,
                tw = (g.ow + kTile - 1) / kTile;
  const Scalar s = y.scalar();
  const bool parallel = numel(y.shape, c.max_batch()) >= kParallelMinElements;
  // The 36 planes of U, V and M lie a cache line more than their size
  // apart: a power-of-two size (1 MB for 512 x 512 channels) would put a
  // tile's 36 values in one cache set (the 512-channel filter's transform
  // took 15 ms instead of 1, ResNet-18, AVX-512 host).
  auto plane = [](int64_t floats) { return floats + kPlaneSkew; };
  BufRef U = scratch(c, "Winograd filter of", {kProducts, plane(C * F)});
  // Product-major: each product's rows (tiles) contiguous, as the GEMM
  // streams them, sized for the largest batch so that products lie a
  // constant distance apart.
  const int64_t max_tiles = max_images(c, x) * th * tw;
  BufRef V = scratch(c, "Winograd input tiles of", {kProducts, plane(max_tiles * C)});
  BufRef M = scratch(c, "Winograd product tiles of", {kProducts, plane(max_tiles * F)});

  auto kf = c.kernel("conv2d 3x3 as Winograd F(4x4, 3x3): the filter's transform U = G g G^T");
  kf.loop("c", 0, C, [&](E ci) {
    kf.loop("f", 0, F, [&](E f) {
      std::vector<E> taps;
      for (int64_t a = 0; a < 3; ++a)
        for (int64_t b = 0; b < 3; ++b) taps.push_back(kf.load(w, w.offset({a, b, ci, f})));
      std::vector<E> u = two_sided(kf, kG, kPatch, 3, taps, s);
      for (int64_t xi = 0; xi < kProducts; ++xi) kf.store(U, E(xi * plane(C * F)) + ci * E(F) + f, u[static_cast<size_t>(xi)]);
    });
  }, C * F >= kParallelMinElements / 8);

  // (image, tile row) pairs in parallel, so a batch of one still splits.
  auto tiles = [&](KernelBuilder& k, const std::function<void(E, E, E, E)>& body) {
    image_rows(k, x.dim(0), th, [&](E n_ty, E n, E ty) { k.loop("tx", 0, tw, [&](E tx) { body(n_ty, n, ty, tx); }); },
               parallel);
  };

  auto ki = c.kernel("conv2d 3x3 as Winograd F(4x4, 3x3): each 6x6 input tile's transform V = B^T d B");
  tiles(ki, [&](E n_ty, E n, E ty, E tx) {
    std::vector<std::pair<E, E>> at;  // (inside, pixel offset) of the patch's 36 pixels
    for (int64_t r = 0; r < kPatch; ++r)
      for (int64_t q = 0; q < kPatch; ++q) {
        Pixel p = pixel(x, g, n, ty * E(kTile) + E(r - g.pad_top), tx * E(kTile) + E(q - g.pad_left));
        at.emplace_back(ki.let("inside", p.inside), ki.let("at", p.at));
      }
    E first = (n_ty * E(tw) + tx) * E(C);
    ki.loop("c", 0, C, [&](E ci) {
      std::vector<E> d;
      for (auto& [inside, offset] : at) d.push_back(select(inside, ki.load(x, offset + ci), lit(0, s)));
      std::vector<E> v = two_sided(ki, kBT, kPatch, kPatch, d, s);
      for (int64_t xi = 0; xi < kProducts; ++xi) ki.store(V, first + E(xi * plane(max_tiles * C)) + ci, v[static_cast<size_t>(xi)]);
    });
  });

  auto matrix = [](const BufRef& b, int64_t cols) { return BufRef{b.id, b.dtype, {kOpenDim, cols}}; };
  c.gemm(matrix(V, C), false, BufRef{U.id, U.dtype, {C, F}}, false, matrix(M, F),
         "conv2d 3x3 as Winograd F(4x4, 3x3): 36 products of the tiles' transforms with the filter's");
  GemmSpec& gs = c.kernels.back().gemm;
  gs.m = (x.dim(0) * E(th * tw)).p;
  gs.lda = C, gs.ldb = F, gs.ldc = F;
  gs.batch = c_int(kProducts);
  gs.stride_a = plane(max_tiles * C), gs.stride_b = plane(C * F), gs.stride_c = plane(max_tiles * F);
  c.size_gemm_scratch(gs);

  // Tiles that overhang the output (a side not a multiple of 4) go to a
  // padded copy, whose pixels inside are then copied out: Loop IR stores
  // have no guard.
  const bool whole = g.oh % kTile == 0 && g.ow % kTile == 0;
  const BufRef out = whole ? y : scratch(c, "Winograd padded output of", {y.shape[0], th * kTile, tw * kTile, F});
  auto ko = c.kernel("conv2d 3x3 as Winograd F(4x4, 3x3): each 4x4 output tile y = A^T m A");
  tiles(ko, [&](E n_ty, E n, E ty, E tx) {
    E first = (n_ty * E(tw) + tx) * E(F);
    // (Indices as the tile's first pixel + a constant + f: the vectorizer
    // sees the 16 stores a constant distance apart.)
    E corner = ko.let("corner", out.offset({n, ty * E(kTile), tx * E(kTile), 0}));
    ko.loop("f", 0, F, [&](E f) {
      std::vector<E> m;
      for (int64_t xi = 0; xi < kProducts; ++xi) m.push_back(ko.load(M, first + E(xi * plane(max_tiles * F)) + f));
      std::vector<E> pixels = two_sided(ko, kAT, kTile, kPatch, m, s);
      for (int64_t p = 0; p < kTile; ++p)
        for (int64_t q = 0; q < kTile; ++q)
          ko.store(out, corner + E((p * tw * kTile + q) * F) + f, pixels[static_cast<size_t>(p * kTile + q)]);
    });
    if (!whole) return;
    // The tile's 16 pixels are final: a bias, an activation or a residual
    // add after the convolution runs on them here (row_epilogue.h).
    ko.loop("p", 0, kTile * kTile, [&](E p) {
      ko.row_final(y, (n_ty * E(kTile) + p / E(kTile)) * E(g.ow) + tx * E(kTile) + p % E(kTile), F);
    });
  });
  if (whole) return;
  auto kc = c.kernel("conv2d 3x3 as Winograd F(4x4, 3x3): the padded output's pixels inside");
  image_rows(kc, y.dim(0), g.oh, [&](E n_oh, E n, E oh) {
    kc.loop("ow", 0, g.ow, [&](E ow) {
      kc.loop("f", 0, F, [&](E f) { kc.store(y, (n_oh * E(g.ow) + ow) * E(F) + f, kc.load(out, out.offset({n, oh, ow, f}))); });
      kc.row_final(y, n_oh * E(g.ow) + ow, F);
    });
  }, parallel);
}

}  // namespace kiln
