// JIT vs interpreter: convolutions, their gradients, max pooling.
#include "tests/unit/codegen_helpers.h"

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
