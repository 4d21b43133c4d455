// 3x3 stride-1 convolutions as Winograd F(4x4, 3x3) (compiler/ops/
// conv_winograd.cpp): against the interpreter at both vector widths, with
// whole and overhanging tiles, every kind of padding, a stride-1 input
// gradient and a batch below the compiled one; which shapes take it; the filter's transform and its 36
// packed Bs computed once per parameter load in predict; a bias and a ReLU
// after it run inside its output transform.
#include <doctest/doctest.h>

#include <string>

#include "compiler/codegen/codegen.h"
#include "compiler/codegen/programs.h"
#include "compiler/lower/lower_program.h"
#include "tests/unit/codegen_helpers.h"
#include "tests/unit/test_util.h"

using namespace kiln;
using kiln::codegen_test::JitCase;

namespace {

bool is_winograd(const lower::Kernel& k) { return k.comment.find("Winograd F(4x4, 3x3)") != std::string::npos; }

// The Winograd kernels of node `node` (empty: of every node), by kind.
struct WinogradKernels {
  int filter = 0, input = 0, products = 0, output = 0, copy = 0, once = 0, packed = 0;
};
WinogradKernels winograd_kernels(const lower::Program& p, const std::string& entry, const std::string& node) {
  WinogradKernels w;
  for (int id : p.entry(entry)->kernels) {
    const lower::Kernel& k = p.kernels[static_cast<size_t>(id)];
    if (!node.empty() && k.node != node) continue;
    if (k.kind == lower::KernelKind::Gemm && k.gemm.packs_b) {
      w.packed += k.gemm.batched() && k.gemm.batch->ival == 36;
      continue;
    }
    if (!is_winograd(k)) continue;
    w.once += k.once_per_params;
    if (k.comment.find("filter's transform") != std::string::npos) ++w.filter;
    else if (k.comment.find("input tile") != std::string::npos) ++w.input;
    else if (k.comment.find("36 products") != std::string::npos) w.products += k.gemm.batch->ival == 36;
    else if (k.comment.find("output tile") != std::string::npos) ++w.output;
    else if (k.comment.find("pixels inside") != std::string::npos) ++w.copy;
  }
  return w;
}

void build(JitCase& t) {
  // Whole tiles (8 x 8, "same"), tiles overhanging the output (7 x 5 from a
  // 9 x 7 input, "valid"), asymmetric explicit padding (10 x 7), and more
  // output channels than input ones.
  NodeId x8 = t.input("x8", {-1, 8, 8, 16});
  t.out("same", t.op("conv2d", {x8, t.input("w_same", {3, 3, 16, 24})}, {{"padding", "same"}}));
  NodeId x9 = t.input("x9", {-1, 9, 7, 20});
  t.out("valid", t.op("conv2d", {x9, t.input("w_valid", {3, 3, 20, 16})}));
  t.out("explicit", t.op("conv2d", {x9, t.input("w_explicit", {3, 3, 20, 40})}, {{"padding", {0, 1, 3, 0}}}));
  // A stride-1 input gradient: the convolution of dy with the flipped filter.
  t.out("dx", t.op("conv2d_backprop_input", {t.input("dy", {-1, 8, 8, 24}), t.input("w_dx", {3, 3, 16, 24})},
                   {{"input_hw", {8, 8}}, {"padding", "same"}}));
}

}  // namespace

TEST_CASE("winograd: 3x3 convolutions match the interpreter at every vector width, whole tiles or not") {
  for (int bits : {256, 512}) {
    CAPTURE(bits);
    JitCase t(3, 8);  // 3 images in a program compiled for 8: the tiles' planes keep their places
    build(t);
    t.check(1e-5, bits);
  }
  JitCase t(3, 8);
  build(t);
  lower::Program p = lower::lower_program(t.g.name, lower::forward_entries(t.g), {.max_batch = 8});
  for (auto& [name, id] : t.g.outputs) {
    CAPTURE(name);
    WinogradKernels w = winograd_kernels(p, "eval_step", t.g.node(id).name);
    CHECK(w.filter == 1);
    CHECK(w.input == 1);
    CHECK(w.products == 1);
    CHECK(w.output == 1);
    CHECK(w.copy == (name == "same" || name == "dx" ? 0 : 1));  // 7 x 5 and 10 x 7 overhang their tiles; 8 x 8 does not
  }
  for (const lower::Kernel& k : p.kernels)
    if (is_winograd(k) && k.kind == lower::KernelKind::Gemm) CHECK(k.gemm.ldc == k.gemm.n->ival);  // a product's tiles contiguous
}

TEST_CASE("winograd: the shapes that take it") {
  auto takes = [](Shape x, Shape w, nlohmann::json attrs, int64_t max_batch) {
    JitCase t(1, max_batch);
    t.out("y", t.op("conv2d", {t.input("x", std::move(x)), t.input("w", std::move(w))}, std::move(attrs)));
    lower::Program p = lower::lower_program(t.g.name, lower::forward_entries(t.g), {.max_batch = max_batch});
    for (const lower::Kernel& k : p.kernels)
      if (is_winograd(k)) return true;
    return false;
  };
  nlohmann::json same = {{"padding", "same"}};
  CHECK(takes({-1, 8, 8, 16}, {3, 3, 16, 16}, same, 8));                                  // 32 tiles
  CHECK_FALSE(takes({-1, 8, 8, 16}, {3, 3, 16, 16}, same, 4));                            // 16 tiles: the filter's transform unpaid
  CHECK_FALSE(takes({-1, 8, 8, 8}, {3, 3, 8, 16}, same, 8));                              // 8 input channels
  CHECK_FALSE(takes({-1, 8, 8, 16}, {3, 3, 16, 8}, same, 8));                             // 8 output channels
  CHECK_FALSE(takes({-1, 16, 16, 16}, {3, 3, 16, 16}, {{"strides", {2, 2}}}, 8));         // strided
  CHECK_FALSE(takes({-1, 16, 16, 16}, {3, 3, 16, 16}, {{"dilations", {2, 2}}}, 8));       // dilated
  CHECK_FALSE(takes({-1, 16, 16, 16}, {5, 5, 16, 16}, same, 8));                          // 5 x 5
  CHECK_FALSE(takes({-1, 16, 16, 32}, {3, 3, 16, 32}, {{"groups", 2}, {"padding", "same"}}, 8));  // grouped
  test::ScopedEnv off("KILN_NO_WINOGRAD");
  CHECK_FALSE(takes({-1, 8, 8, 16}, {3, 3, 16, 16}, same, 8));
}

TEST_CASE("winograd: in predict the filter's transform and its 36 packed Bs follow the params, once per load") {
  JitCase t(2, 8);
  NodeId x = t.input("x", {-1, 12, 12, 24});
  NodeId w = t.param("w", {3, 3, 24, 40});
  t.out("y", t.op("relu", {t.op("add", {t.op("conv2d", {x, w}, {{"padding", "same"}}), t.param("bias", {40})})}));
  t.check(1e-5);
  auto cp = codegen::compile_entries(t.g.name, {{"eval_step", &t.g, {"y"}, {}}}, {.max_batch = 8});
  const lower::Program& p = cp->loops();
  WinogradKernels k = winograd_kernels(p, "eval_step", "");
  CHECK(k.filter == 1);
  CHECK(k.input == 1);
  CHECK(k.products == 1);
  CHECK(k.output == 1);
  CHECK(k.once == 1);    // the filter's transform
  CHECK(k.packed == 1);  // its 36 Bs, packed product by product
  // The bias and the ReLU run in the output transform (row epilogue): no kernel of their own.
  int others = 0;
  for (int id : p.entry("eval_step")->kernels) {
    const lower::Kernel& kernel = p.kernels[static_cast<size_t>(id)];
    others += !is_winograd(kernel) && !kernel.gemm.packs_b && kernel.node.rfind("output_", 0) != 0;
  }
  CHECK(others == 0);

  // New params: the transform and the panels follow them.
  Program prog(cp->info());
  auto feeds = t.feeds;
  auto first = codegen::run_entry(prog, "eval_step", 2, feeds);
  for (double& v : feeds.at("w").data) v = -v;
  t.feeds = feeds;
  auto again = codegen::run_entry(prog, "eval_step", 2, feeds);
  auto want = interp::Interpreter(t.g, interp::Precision::f32).run(feeds, {"y"});
  double max_ref = 0, max_diff = 0, changed = 0;
  for (size_t i = 0; i < want.at("y").data.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(want.at("y").data[i]));
    max_diff = std::max(max_diff, std::fabs(again.at("y").data[i] - want.at("y").data[i]));
    changed = std::max(changed, std::fabs(again.at("y").data[i] - first.at("y").data[i]));
  }
  CHECK(max_ref > 0);
  CHECK(changed > 0.1 * max_ref);
  CHECK(max_diff <= 1e-5 * max_ref);
}

TEST_CASE("winograd: the 36 products take 6 x 64 tiles with 32 vector registers, 6 x 16 with 16 (AVX2)") {
  JitCase t(2, 8);
  t.out("y", t.op("conv2d", {t.input("x", {-1, 8, 8, 16}), t.param("w", {3, 3, 16, 64})}, {{"padding", "same"}}));
  t.check(1e-5, 512);
  lower::Program p = lower::lower_program(t.g.name, lower::forward_entries(t.g), {.max_batch = 8});
  const std::string wide = codegen::llvm_ir_text(p, "", {.vector_bits = 512});
  const std::string narrow = codegen::llvm_ir_text(p, "", {.vector_bits = 256});
  CHECK(wide.find("@kiln_gemm_ukr_win_6x4x16_") != std::string::npos);  // (their rows read in place)
  CHECK(narrow.find("@kiln_gemm_ukr_6x16(") != std::string::npos);  // (4 panels of 16: A packed)
  CHECK(narrow.find("x4x8") == std::string::npos);
}

TEST_CASE("winograd: an input of a fixed batch larger than the compiled one sizes the tiles' planes") {
  JitCase t(2, 2);  // a program for 2 images at most, over an input that always holds 8
  t.out("y", t.op("conv2d", {t.input("x", {8, 8, 8, 16}), t.input("w", {3, 3, 16, 16})}, {{"padding", "same"}}));
  t.check(1e-5);
  lower::Program p = lower::lower_program(t.g.name, lower::forward_entries(t.g), {.max_batch = 2});
  int products = 0;
  for (const lower::Kernel& k : p.kernels) products += is_winograd(k) && k.kind == lower::KernelKind::Gemm;
  CHECK(products == 1);  // 8 images x 4 tiles
}
