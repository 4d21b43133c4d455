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
}

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
    for (const char* name : {"y16", "y32", "dw16", "dw32", "dw_groups"}) {
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
