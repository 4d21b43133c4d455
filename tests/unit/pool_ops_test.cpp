// Pooling on values written out: avgpool2d's divisor (taps inside the input,
// or with count_include_pad those on the explicit padding too, never the
// ceil_mode overhang), maxpool2d with dilation and ceil_mode, global pools.
#include <doctest/doctest.h>

#include "codegen_helpers.h"

using namespace kiln;
using codegen_test::JitCase;

TEST_CASE("pooling: avgpool2d divisors, dilated and ceil-mode maxpool2d, global pools (JIT and interpreter)") {
  JitCase t(1, 1);
  NodeId ones = t.input("ones", {1, 3, 3, 1});
  for (double& v : t.feeds["ones"].data) v = 1;
  NodeId x = t.input("x", {1, 4, 4, 1});
  for (size_t i = 0; i < 16; ++i) t.feeds["x"].data[i] = static_cast<double>(i);  // row-major 0..15
  // 2x2 windows, stride 2, ceil_mode: the right and bottom windows hang over and count only their 1-2 taps.
  t.out("ceil", t.op("avgpool2d", {ones}, {{"pool", {2, 2}}, {"ceil_mode", true}}));
  // One 3x3 window over [-1, 1]^2: 4 taps inside; with the padding counted, divided by 9.
  t.out("with_pad", t.op("avgpool2d", {ones}, {{"pool", {3, 3}}, {"padding", {1, 1, 1, 1}}, {"count_include_pad", true}}));
  t.out("without_pad", t.op("avgpool2d", {ones}, {{"pool", {3, 3}}, {"padding", {1, 1, 1, 1}}}));
  // Max over taps {0, 2} x {0, 2} (dilation 2), stride 1: windows at (0,0), (0,1), (1,0), (1,1).
  t.out("dilated", t.op("maxpool2d", {x}, {{"pool", {2, 2}}, {"strides", {1, 1}}, {"dilations", {2, 2}}}));
  t.out("ceil_max", t.op("maxpool2d", {x}, {{"pool", {3, 3}}, {"strides", {2, 2}}, {"ceil_mode", true}}));
  t.out("global_avg", t.op("global_avgpool2d", {x}));
  t.out("global_max", t.op("global_maxpool2d", {x}, {{"keepdims", true}}));
  auto got = t.check(1e-6);
  CHECK(got.at("ceil").data == std::vector<double>{1, 1, 1, 1});
  CHECK(got.at("with_pad").data[0] == doctest::Approx(4.0 / 9));
  CHECK(got.at("without_pad").data[0] == doctest::Approx(1.0));
  CHECK(got.at("dilated").data == std::vector<double>{10, 11, 14, 15});
  CHECK(got.at("ceil_max").data == std::vector<double>{10, 11, 14, 15});
  CHECK(got.at("global_avg").data == std::vector<double>{7.5});
  CHECK(got.at("global_max").shape == Shape{1, 1, 1, 1});
  CHECK(got.at("global_max").data == std::vector<double>{15});
}

TEST_CASE("layout NCHW: conv2d with an OIHW filter and pooling read channels second (values written out)") {
  JitCase t(1, 1);
  NodeId x = t.input("x", {1, 2, 2, 2});  // N=1, C=2, H=2, W=2
  t.feeds["x"].data = {1, 2, 3, 4, /* channel 1: */ 10, 20, 30, 40};
  NodeId w = t.input("w", {1, 2, 1, 2});  // F=1, C=2, KH=1, KW=2
  t.feeds["w"].data = {1, 0.5, /* channel 1: */ 0.1, 0};
  t.out("conv", t.op("conv2d", {x, w}, {{"layout", "NCHW"}}));
  t.out("max", t.op("maxpool2d", {x}, {{"layout", "NCHW"}}));
  t.out("avg", t.op("global_avgpool2d", {x}, {{"layout", "NCHW"}}));
  auto got = t.check(1e-6);
  CHECK(got.at("conv").shape == Shape{1, 1, 2, 1});
  CHECK(got.at("conv").data[0] == doctest::Approx(1 + 0.5 * 2 + 0.1 * 10));
  CHECK(got.at("conv").data[1] == doctest::Approx(3 + 0.5 * 4 + 0.1 * 30));
  CHECK(got.at("max").data == std::vector<double>{4, 40});
  CHECK(got.at("avg").data == std::vector<double>{2.5, 25});
}

TEST_CASE("layout NCW: conv1d with an [F, C, K] filter, and the 1-D pools (values written out)") {
  JitCase t(1, 1);
  NodeId x = t.input("x", {1, 2, 3});  // N=1, C=2, W=3
  t.feeds["x"].data = {1, 2, 3, /* channel 1: */ 5, 0, 7};
  NodeId w = t.input("w", {1, 2, 2});  // F=1, C=2, K=2
  t.feeds["w"].data = {1, 10, /* channel 1: */ 0, 1};
  t.out("conv", t.op("conv1d", {x, w}, {{"layout", "NCW"}}));
  t.out("max", t.op("maxpool1d", {x}, {{"layout", "NCW"}, {"pool", {2}}, {"strides", {1}}}));
  auto got = t.check(1e-6);
  CHECK(got.at("conv").data == std::vector<double>{1 + 20 + 0, 2 + 30 + 7});
  CHECK(got.at("max").data == std::vector<double>{2, 3, 5, 7});
}
