// JIT vs interpreter: convolutions, their gradients, max pooling; how f32
// convolutions lower (GEMMs over their windows).
#include <algorithm>

#include "compiler/lower/lower_program.h"
#include "tests/unit/codegen_helpers.h"
#include "tests/unit/test_util.h"

using namespace kiln;
using namespace kiln::codegen_test;

TEST_CASE("codegen: conv2d forward, valid and same padding, strides 1 and 2") {
  JitCase t(3, 4);
  NodeId x = t.input("x", {-1, 9, 7, 3});
  NodeId w33 = t.input("w33", {3, 3, 3, 7});
  NodeId w1 = t.input("w1", {1, 1, 3, 33});
  NodeId w52 = t.input("w52", {5, 2, 3, 1});
  t.out("valid", t.op("conv2d", {x, w33}));
  t.out("same", t.op("conv2d", {x, w33}, {{"padding", "same"}}));
  t.out("same_s2", t.op("conv2d", {x, w33}, {{"padding", "same"}, {"strides", {2, 2}}}));
  t.out("valid_s2", t.op("conv2d", {x, w52}, {{"strides", {2, 1}}}));
  t.out("pointwise", t.op("conv2d", {x, w1}));
  t.out("same_52", t.op("conv2d", {x, w52}, {{"padding", "same"}, {"strides", {1, 2}}}));
  t.check();
}

TEST_CASE("codegen: conv2d gradients (input and filter), valid and same, strided") {
  JitCase t(3, 5);
  NodeId x = t.input("x", {-1, 9, 8, 3});
  NodeId w = t.input("w", {3, 3, 3, 7});
  NodeId dy_valid = t.input("dy_valid", {-1, 7, 6, 7});
  NodeId dy_same_s2 = t.input("dy_same_s2", {-1, 5, 4, 7});
  NodeId dy_valid_s2 = t.input("dy_valid_s2", {-1, 4, 3, 7});
  Attrs valid{{"input_hw", {9, 8}}}, same_s2{{"input_hw", {9, 8}}, {"padding", "same"}, {"strides", {2, 2}}},
      valid_s2{{"input_hw", {9, 8}}, {"strides", {2, 2}}};
  t.out("dx_valid", t.op("conv2d_backprop_input", {dy_valid, w}, valid));
  t.out("dx_same_s2", t.op("conv2d_backprop_input", {dy_same_s2, w}, same_s2));
  t.out("dx_valid_s2", t.op("conv2d_backprop_input", {dy_valid_s2, w}, valid_s2));  // the last row gets nothing
  Attrs fvalid{{"filter_hw", {3, 3}}}, fsame_s2{{"filter_hw", {3, 3}}, {"padding", "same"}, {"strides", {2, 2}}};
  t.out("dw_valid", t.op("conv2d_backprop_filter", {x, dy_valid}, fvalid));
  t.out("dw_same_s2", t.op("conv2d_backprop_filter", {x, dy_same_s2}, fsame_s2));
  t.check();
}

TEST_CASE("codegen: maxpool2d and its gradient, valid and same, overlapping windows") {
  JitCase t(2, 3);
  NodeId x = t.input("x", {-1, 9, 7, 33});
  NodeId dy2 = t.input("dy2", {-1, 4, 3, 33});
  NodeId dy_same = t.input("dy_same", {-1, 5, 4, 33});
  NodeId dy_overlap = t.input("dy_overlap", {-1, 4, 3, 33});
  t.out("pool", t.op("maxpool2d", {x}));
  t.out("pool_same", t.op("maxpool2d", {x}, {{"padding", "same"}}));
  t.out("pool_overlap", t.op("maxpool2d", {x}, {{"pool", {3, 3}}, {"strides", {2, 2}}}));
  t.out("grad", t.op("maxpool2d_grad", {x, dy2}));
  t.out("grad_same", t.op("maxpool2d_grad", {x, dy_same}, {{"padding", "same"}}));
  t.out("grad_overlap", t.op("maxpool2d_grad", {x, dy_overlap}, {{"pool", {3, 3}}, {"strides", {2, 2}}}));
  t.check();
}

// Big enough for the thread pool (the GEMMs' 2^18 multiply-adds), odd channel
// counts per group, and the products of a grouped GEMM on 1, 2 and 3 threads.
TEST_CASE("codegen: grouped and depthwise conv2d with their gradients, bit-identical on 1, 2 and 3 threads") {
  JitCase t(6, 6);
  NodeId x = t.input("x", {-1, 17, 15, 12});
  NodeId w_grouped = t.input("w_grouped", {3, 3, 4, 9});     // 3 groups of 4 -> 3
  NodeId w_depthwise = t.input("w_depthwise", {3, 3, 1, 24});  // 12 groups, multiplier 2
  NodeId dy = t.input("dy", {-1, 17, 15, 9});
  Attrs grouped{{"groups", 3}, {"padding", "same"}}, depthwise{{"groups", 12}, {"dilations", {2, 2}}, {"padding", {2, 2, 2, 2}}};
  t.out("grouped", t.op("conv2d", {x, w_grouped}, grouped));
  t.out("depthwise", t.op("conv2d", {x, w_depthwise}, depthwise));
  Attrs dx_attrs = grouped, dw_attrs = grouped;
  dx_attrs["input_hw"] = {17, 15};
  dw_attrs["filter_hw"] = {3, 3};
  t.out("dx", t.op("conv2d_backprop_input", {dy, w_grouped}, dx_attrs));
  t.out("dw", t.op("conv2d_backprop_filter", {x, dy}, dw_attrs));
  t.check(2e-5);
  std::vector<std::string> names{"grouped", "depthwise", "dx", "dw"};
  auto cp = codegen::compile_entries("grouped", {{"eval_step", &t.g, names, {}}}, {.max_batch = 6});
  auto runs = run_on_threads(*cp, "eval_step", 6, t.feeds);
  for (auto& name : names)
    for (size_t r = 1; r < runs.size(); ++r) {
      CAPTURE(name);
      CHECK(runs[r].at(name).data == runs[0].at(name).data);
    }
}

// f32 convolutions read their GEMM's A through the windows (gemm_pack_windows.cpp):
// channel counts below, at and past a vector, K blocks that start mid-tap,
// partial row panels, padding on every side, dilation, strides and groups, at
// every vector width (128 bits: the gather path; 256, 512: loads and
// transposes). The input gradient at stride 1 is a convolution of dy; the
// filter gradient reads the windows as its GEMM's B.
TEST_CASE("codegen: convolutions through their windows at every vector width, and the stride-1 input gradient") {
  test::ScopedEnv windows("KILN_NO_WINOGRAD");  // (c64_wide_tiles would take Winograd: winograd_test.cpp)
  for (int bits : {128, 256, 512}) {
    INFO("vector bits " << bits);
    JitCase t(3, 4);
    NodeId x3 = t.input("x3", {-1, 9, 8, 3});
    NodeId x20 = t.input("x20", {-1, 7, 6, 20});
    NodeId x40 = t.input("x40", {-1, 5, 5, 40});
    NodeId x8 = t.input("x8", {-1, 9, 9, 8});
    t.out("c3_same", t.op("conv2d", {x3, t.input("w3", {3, 3, 3, 7})}, {{"padding", "same"}}));
    t.out("c20_dilated", t.op("conv2d", {x20, t.input("w20", {3, 3, 20, 5})},
                              {{"padding", {1, 0, 2, 1}}, {"dilations", {2, 1}}}));
    t.out("c40_one_block", t.op("conv2d", {x40, t.input("w40", {3, 3, 40, 4})}, {{"padding", "same"}}));  // K 360
    // Filters that are params: packed once per load in the product's depth
    // blocks (K 360: one; K 720: two of 360, kGemmWindowsKC).
    t.out("c40_packed_once", t.op("conv2d", {x40, t.param("p40", {3, 3, 40, 12})}, {{"padding", "same"}}));
    t.out("c80_packed_once", t.op("conv2d", {t.input("x80", {-1, 4, 5, 80}), t.param("p80", {3, 3, 80, 40})},
                                  {{"padding", "same"}}));
    // 64 and 192 output channels: 6 x 64 tiles at 512 bits (gemm_plan), one filter packed once.
    t.out("c64_wide_tiles", t.op("conv2d", {x40, t.param("p64", {3, 3, 40, 64})}, {{"padding", "same"}}));
    t.out("c192_wide_tiles", t.op("conv2d", {x8, t.input("w192", {3, 3, 8, 192})}, {{"strides", {2, 2}}}));
    t.out("c8_groups_s2", t.op("conv2d", {x8, t.input("w8", {3, 3, 4, 6})},
                               {{"groups", 2}, {"strides", {2, 2}}, {"padding", "same"}}));
    NodeId wg = t.input("wg", {3, 3, 4, 6});
    t.out("dx_groups", t.op("conv2d_backprop_input", {t.input("dy_g", {-1, 9, 8, 6}), wg},
                            {{"input_hw", {9, 8}}, {"groups", 2}, {"padding", "same"}}));
    t.out("dx_dilated", t.op("conv2d_backprop_input", {t.input("dy_d", {-1, 6, 6, 5}), t.input("wd", {3, 2, 20, 5})},
                             {{"input_hw", {7, 6}}, {"dilations", {2, 3}}, {"padding", {1, 1, 2, 2}}}));
    // Filter gradients read x's windows as B: panels within one tap (20
    // channels: vectors of 8 or 16 from one tap, and the rest), across taps
    // (3 channels: gathered), groups, strides, dilation.
    t.out("dw3_same", t.op("conv2d_backprop_filter", {x3, t.input("dy3", {-1, 9, 8, 7})},
                           {{"filter_hw", {3, 3}}, {"padding", "same"}}));
    t.out("dw20_dilated", t.op("conv2d_backprop_filter", {x20, t.input("dy20", {-1, 6, 5, 5})},
                               {{"filter_hw", {3, 3}}, {"padding", {1, 0, 2, 1}}, {"dilations", {2, 1}}}));
    t.out("dw8_groups_s2", t.op("conv2d_backprop_filter", {x8, t.input("dy8", {-1, 5, 5, 6})},
                                {{"filter_hw", {3, 3}}, {"groups", 2}, {"strides", {2, 2}}, {"padding", "same"}}));
    // Padding past the window: not a convolution of dy (window gradients and col2im).
    t.out("dx_wide_pad", t.op("conv2d_backprop_input", {t.input("dy_w", {-1, 10, 6, 6}), wg},
                              {{"input_hw", {9, 8}}, {"groups", 2}, {"padding", {3, 0, 0, 0}}}));
    t.check(1e-5, bits);
    if (bits < 256) continue;
    std::vector<std::string> names;
    for (auto& [n, id] : t.g.outputs) names.push_back(n);
    lower::Program p = lower::lower_program(t.g.name, {{"eval_step", &t.g, names, {}}}, {.max_batch = 4});
    const std::string ir = codegen::llvm_ir_text(p, "", {.vector_bits = bits, .optimize = false});
    // 64 and 192 channels: 6 x 4 vectors at 512 bits; 6 x 2 at 256 (16 registers).
    CHECK((ir.find("@kiln_gemm_ukr_win_6x4x16_h5w5c40g40_k3x3") != std::string::npos) == (bits == 512));
    CHECK((ir.find("@kiln_gemm_ukr_win_6x4x16_h9w9c8g8_k3x3_s2x2") != std::string::npos) == (bits == 512));
    CHECK((ir.find("@kiln_gemm_ukr_win_6x2x8_h5w5c40g40_k3x3") != std::string::npos) == (bits == 256));
  }
}

TEST_CASE("lowering: f32 convolutions and filter gradients build no im2col matrix, the stride-1 input gradient no window gradients") {
  test::ScopedEnv windows("KILN_NO_WINOGRAD");  // (y would take Winograd: winograd_test.cpp)
  Graph g;
  g.name = "windows";
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {-1, 8, 8, 16}});
  NodeId w = b.param("w", {DType::f32, {3, 3, 16, 16}});
  NodeId dy = b.input("dy", {DType::f32, {-1, 8, 8, 16}});
  g.outputs = {{"y", b.add("conv2d", {x, w}, {{"padding", "same"}})},
               {"dx", b.add("conv2d_backprop_input", {dy, w}, {{"input_hw", {8, 8}}, {"padding", "same"}})},
               {"dx_s2", b.add("conv2d_backprop_input", {b.input("dy2", {DType::f32, {-1, 4, 4, 16}}), w},
                               {{"input_hw", {8, 8}}, {"padding", "same"}, {"strides", {2, 2}}})},
               {"dw", b.add("conv2d_backprop_filter", {x, dy}, {{"filter_hw", {3, 3}}, {"padding", "same"}})}};
  auto p = lower::lower_program(g.name, lower::forward_entries(g), {.max_batch = 4});
  int windowed = 0, packs_windowed = 0;
  for (const lower::Kernel& k : p.kernels)
    if (k.kind == lower::KernelKind::Gemm && k.gemm.windows) ++(k.gemm.packs_b ? packs_windowed : windowed);
  CHECK(windowed == 2);  // y, dx (the strided input gradient keeps dy @ w^T)
  // y's filter, a param, is packed once per load by a kernel that carries y's
  // windows: A's form chooses the depth blocks, hence the panels' layout.
  // So is dx's flipped filter: the kernel that flips it reads the param
  // alone, so it runs once per load too (hoist_param_kernels).
  CHECK(packs_windowed == 2);
  int flips_once = 0;
  for (const lower::Kernel& k : p.kernels) flips_once += k.once_per_params && k.comment.find("the filter flipped") != std::string::npos;
  CHECK(flips_once == 1);
  int windowed_b = 0;
  for (const lower::Kernel& k : p.kernels)
    if (k.kind == lower::KernelKind::Gemm && k.gemm.windows_b) ++windowed_b;
  CHECK(windowed_b == 1);  // dw = (dy^T @ x's windows)^T
  std::vector<std::string> scratch;
  for (const lower::Buffer& buf : p.buffers) scratch.push_back(buf.name);
  auto has = [&](const std::string& prefix) {
    return std::count_if(scratch.begin(), scratch.end(), [&](const std::string& n) { return n.rfind(prefix, 0) == 0; });
  };
  CHECK(has("im2col") == 0);
  CHECK(has("col gradient") == 1);  // dx_s2's only
  CHECK(has("flipped filter") == 1);
  CHECK(has("transposed filter gradient") == 1);
}

// Depthwise (groups = channels, multiplier 1) lowers to loops over the
// channels (conv_depthwise.cpp): channel counts past a vector, strides 1 and
// 2, "same" and explicit padding, dilation; the filter gradient sums batch
// chunks in a fixed order (6 images in 8 chunks: some empty), so any thread
// count gives the same bits.
TEST_CASE("codegen: depthwise conv2d and its gradients as channel loops, bit-identical on 1, 2 and 3 threads") {
  JitCase t(6, 6);
  NodeId x = t.input("x", {-1, 9, 8, 20});
  NodeId w = t.input("w", {3, 3, 1, 20});
  Attrs same{{"groups", 20}, {"padding", "same"}}, s2{{"groups", 20}, {"padding", {1, 0, 1, 1}}, {"strides", {2, 2}}},
      dilated{{"groups", 20}, {"padding", {2, 1, 0, 2}}, {"dilations", {2, 1}}};
  std::vector<std::string> names;
  auto add = [&](const std::string& name, const Attrs& a) {
    NodeId y = t.op("conv2d", {x, w}, a);
    const Shape ys = t.b.type(y).shape;
    NodeId dy = t.input("dy_" + name, ys);
    Attrs in = a, filter = a;
    in["input_hw"] = {9, 8};
    filter["filter_hw"] = {3, 3};
    t.out("y_" + name, y);
    t.out("dx_" + name, t.op("conv2d_backprop_input", {dy, w}, in));
    t.out("dw_" + name, t.op("conv2d_backprop_filter", {x, dy}, filter));
    for (const char* p : {"y_", "dx_", "dw_"}) names.push_back(p + name);
  };
  add("same", same);
  add("s2", s2);
  add("dilated", dilated);
  t.check(2e-5);
  auto cp = codegen::compile_entries("depthwise", {{"eval_step", &t.g, names, {}}}, {.max_batch = 6});
  for (const lower::Kernel& k : cp->loops().kernels) CHECK(k.kind != lower::KernelKind::Gemm);
  auto runs = run_on_threads(*cp, "eval_step", 6, t.feeds);
  for (auto& name : names)
    for (size_t r = 1; r < runs.size(); ++r) {
      CAPTURE(name);
      CHECK(runs[r].at(name).data == runs[0].at(name).data);
    }
}

// At stride 1 a depthwise row's interior pixels are summed four at a time
// (conv_depthwise.cpp), its border pixels one at a time: every pixel sums
// its taps in the reference's order, so each output equals, bit for bit, a
// float loop over the taps (row by row, zero for a tap in the padding).
// Width 13 with a 3-wide window: a border pixel each side, two blocks of
// interior pixels and three left over; dilated 2 across, two each side.
TEST_CASE("codegen: a depthwise row's interior pixels summed in blocks give the taps' float sum in order") {
  const int64_t H = 5, W = 13, C = 20;
  for (int64_t dil : {1, 2}) {
    CAPTURE(dil);
    JitCase t(2, 2);
    NodeId x = t.input("x", {-1, H, W, C});
    NodeId w = t.input("w", {3, 3, 1, C});
    Attrs a{{"groups", C}, {"padding", {1, dil, 1, dil}}, {"dilations", {1, dil}}};  // top, left, bottom, right
    t.out("y", t.op("conv2d", {x, w}, a));
    const auto got = t.check(2e-5);
    const std::vector<double>& y = got.at("y").data;
    REQUIRE(y.size() == static_cast<size_t>(2 * H * W * C));
    const std::vector<double>&xs = t.feeds.at("x").data, &ws = t.feeds.at("w").data;
    int64_t wrong = 0;
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t oh = 0; oh < H; ++oh)
        for (int64_t ow = 0; ow < W; ++ow)
          for (int64_t ch = 0; ch < C; ++ch) {
            float sum = 0;
            for (int64_t kh = 0; kh < 3; ++kh)
              for (int64_t kw = 0; kw < 3; ++kw) {
                const int64_t ih = oh + kh - 1, iw = ow + kw * dil - dil;
                const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
                const float v = inside ? static_cast<float>(xs[((n * H + ih) * W + iw) * C + ch]) : 0.0f;
                sum = sum + v * static_cast<float>(ws[(kh * 3 + kw) * C + ch]);
              }
            wrong += static_cast<double>(sum) != y[((n * H + oh) * W + ow) * C + ch];
          }
    CHECK(wrong == 0);
  }
}
