// Convolutions whose GEMM reads the image in place (gemm_direct_windows.cpp):
// the forward convolution's A rows and the filter gradient's B panels come
// straight from the image through the windows, with no packed copy. They must
// give the interpreter's values and the packed path's bits
// (KILN_NO_DIRECT_CONV=1), at every vector width, through padding on every
// side, strides, dilation, groups, filters not a multiple of the register
// tile and depth blocks that end mid-row (270 positions at batch 3).
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>

#include "compiler/codegen/codegen.h"
#include "compiler/lower/lower_program.h"
#include "tests/unit/codegen_helpers.h"

using namespace kiln;
using kiln::codegen_test::JitCase;

namespace {

void build(JitCase& t) {
  NodeId x16 = t.input("x16", {-1, 9, 10, 16});
  NodeId x32 = t.input("x32", {-1, 8, 7, 32});
  // Forward: 16 channels in, 7 filters (one partial column panel).
  t.out("y16", t.op("conv2d", {x16, t.input("w16", {3, 3, 16, 7})}, {{"padding", "same"}}));
  // Stride 2, dilation, uneven padding, 40 filters (several panels).
  Attrs odd{{"strides", {2, 2}}, {"dilations", {1, 2}}, {"padding", {1, 0, 2, 1}}};
  t.out("y32", t.op("conv2d", {x32, t.input("w32", {3, 3, 32, 40})}, odd));
  // Filter gradients: 16 channels a tap, same padding; the odd geometry; two groups of 16.
  t.out("dw16", t.op("conv2d_backprop_filter", {x16, t.input("dy16", {-1, 9, 10, 7})},
                     {{"filter_hw", {3, 3}}, {"padding", "same"}}));
  t.out("dw32", t.op("conv2d_backprop_filter", {x32, t.input("dy32", {-1, 5, 2, 40})},
                     {{"filter_hw", {3, 3}}, {"strides", {2, 2}}, {"dilations", {1, 2}}, {"padding", {1, 0, 2, 1}}}));
  t.out("dw_groups", t.op("conv2d_backprop_filter", {x32, t.input("dy_g", {-1, 8, 7, 10})},
                          {{"filter_hw", {3, 3}}, {"groups", 2}, {"padding", "same"}}));
  // Stems: few channels, a window row's taps read as one run (window_run):
  // 7x7 stride 2 over 3 channels (runs of 21, crossing both edges); 3x3 with
  // vertical dilation and uneven padding (runs of 9); a window wider than the
  // image (no row's run is whole); one channel 5x5 (runs of 5: packed).
  NodeId x3 = t.input("x3", {-1, 11, 9, 3});
  t.out("stem7", t.op("conv2d", {x3, t.input("w7", {7, 7, 3, 5})}, {{"strides", {2, 2}}, {"padding", "same"}}));
  t.out("stem3", t.op("conv2d", {x3, t.input("w3", {3, 3, 3, 18})},
                      {{"strides", {2, 1}}, {"dilations", {2, 1}}, {"padding", {2, 0, 1, 2}}}));
  NodeId narrow = t.input("narrow", {-1, 6, 4, 3});
  t.out("wide", t.op("conv2d", {narrow, t.input("w_wide", {3, 7, 3, 4})}, {{"padding", {1, 3, 1, 3}}}));
  NodeId x1 = t.input("x1", {-1, 9, 10, 1});
  t.out("mono", t.op("conv2d", {x1, t.input("w1", {5, 5, 1, 6})}, {{"padding", "same"}}));
}

const char* const kOutputs[] = {"y16", "y32", "dw16", "dw32", "dw_groups", "stem7", "stem3", "wide", "mono"};

}  // namespace

TEST_CASE("codegen: direct convolutions read the image in place and give the packed path's bits") {
  for (int bits : {128, 256, 512}) {
    INFO("vector bits " << bits);
    JitCase t(3, 4);
    build(t);
    auto direct = t.check(1e-5, bits);
    setenv("KILN_NO_DIRECT_CONV", "1", 1);
    auto packed = t.check(1e-5, bits);
    unsetenv("KILN_NO_DIRECT_CONV");
    for (const char* name : kOutputs) {
      CAPTURE(name);
      CHECK(direct.at(name).data == packed.at(name).data);
    }
  }
}

TEST_CASE("codegen: the direct micro-kernels are the ones emitted, for AVX2 and AVX-512 alike") {
  JitCase t(3, 4);
  build(t);
  auto p = lower::lower_program(t.g.name, lower::forward_entries(t.g), {.max_batch = 4});
  for (const char* cpu : {"znver3", "znver4"}) {
    CAPTURE(cpu);
    const std::string ir = codegen::llvm_ir_text(p, "", {.target_cpu = cpu});
    CHECK(ir.find("@kiln_gemm_ukr_win_") != std::string::npos);   // A's rows in place
    CHECK(ir.find("@kiln_gemm_ukr_winb_") != std::string::npos);  // B's panels in place
  }
  setenv("KILN_NO_DIRECT_CONV", "1", 1);
  const std::string packed = codegen::llvm_ir_text(p, "", {.target_cpu = "znver3"});
  unsetenv("KILN_NO_DIRECT_CONV");
  CHECK(packed.find("@kiln_gemm_ukr_win") == std::string::npos);
  CHECK(packed.find("@kiln_gemm_pack_a_win") != std::string::npos);
}

TEST_CASE("codegen: a 3-channel stem reads its window rows in place, one channel packs them") {
  for (int64_t channels : {3, 1}) {
    CAPTURE(channels);
    JitCase t(2, 2);
    NodeId x = t.input("x", {-1, 16, 16, channels});
    t.out("y", t.op("conv2d", {x, t.input("w", {5, 5, channels, 8})}, {{"strides", {2, 2}}, {"padding", "same"}}));
    auto p = lower::lower_program(t.g.name, lower::forward_entries(t.g), {.max_batch = 2});
    const std::string ir = codegen::llvm_ir_text(p, "", {.target_cpu = "znver4"});
    // Runs of 5 x 3 = 15 floats (>= 8): direct; runs of 5: packed.
    CHECK((ir.find("@kiln_gemm_ukr_win_") != std::string::npos) == (channels == 3));
    CHECK((ir.find("@kiln_gemm_pack_a_win") != std::string::npos) == (channels == 1));
  }
}
