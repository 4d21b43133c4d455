// Row epilogues (compiler/lower/row_epilogue.h): the elementwise kernel after
// a depthwise convolution (a bias and a clip: batch norm folded, then ReLU6)
// runs inside it on each pixel's channels. It must give the interpreter's
// values and the unfused kernels' bits (KILN_NO_ROW_EPILOGUE=1) at every
// vector width, with a per-channel operand (rows x columns nest) and a flat
// consumer alike; a convolution whose output has two readers keeps its own.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>

#include "compiler/codegen/codegen.h"
#include "compiler/lower/lower_program.h"
#include "tests/unit/codegen_helpers.h"

using namespace kiln;
using kiln::codegen_test::JitCase;

namespace {

// A depthwise 3x3 convolution over `channels` channels (not a multiple of any vector width).
NodeId depthwise(JitCase& t, const std::string& name, int64_t channels, Attrs attrs) {
  NodeId x = t.input(name + "_x", {-1, 9, 10, channels});
  attrs["groups"] = channels;
  return t.op("conv2d", {x, t.input(name + "_w", {3, 3, 1, channels})}, attrs);
}

void build(JitCase& t) {
  // Bias per channel, then ReLU6: a rows x columns consumer.
  NodeId y = depthwise(t, "biased", 21, {{"padding", "same"}});
  NodeId biased = t.op("add", {y, t.input("bias", {21})});
  t.out("relu6", t.op("clip", {biased}, {{"min", 0.0}, {"max", 6.0}}));
  // Stride 2, no bias: tanh alone, a flat consumer.
  t.out("tanh", t.op("tanh", {depthwise(t, "strided", 13, {{"padding", "same"}, {"strides", {2, 2}}})}));
  // Two readers of the convolution's output: no epilogue.
  NodeId shared = depthwise(t, "shared", 8, {{"padding", "same"}});
  t.out("shared_exp", t.op("exp", {shared}));
  t.out("shared_neg", t.op("neg", {shared}));
}

std::vector<std::string> lowering_notes(JitCase& t) {
  std::vector<std::string> why;
  std::vector<std::string> names;
  for (auto& [n, id] : t.g.outputs) names.push_back(n);
  lower::lower_program(t.g.name, {{"eval_step", &t.g, names, {}}}, {.max_batch = 4, .why = &why});
  return why;
}

}  // namespace

TEST_CASE("row epilogue: a bias, clip or tanh after a depthwise convolution runs on its rows, same bits") {
  for (int bits : {128, 256, 512}) {
    INFO("vector bits " << bits);
    JitCase t(3, 4);
    build(t);
    auto fused = t.check(1e-5, bits);
    setenv("KILN_NO_ROW_EPILOGUE", "1", 1);
    auto apart = t.check(1e-5, bits);
    unsetenv("KILN_NO_ROW_EPILOGUE");
    for (const char* name : {"relu6", "tanh", "shared_exp", "shared_neg"}) {
      CAPTURE(name);
      CHECK(fused.at(name).data == apart.at(name).data);
    }
  }
}

TEST_CASE("row epilogue: which consumers go in, and why the others stay out") {
  JitCase t(3, 4);
  build(t);
  auto why = lowering_notes(t);
  auto count = [&](const std::string& what) {
    return std::count_if(why.begin(), why.end(), [&](const std::string& l) { return l.find(what) != std::string::npos; });
  };
  CHECK(count(": row epilogue: ") == 2);
  CHECK(count("no row epilogue: its product has several readers") == 1);
  // The fused kernels compute the consumers' nodes; theirs are gone.
  std::vector<std::string> names;
  for (auto& [n, id] : t.g.outputs) names.push_back(n);
  lower::Program p = lower::lower_program(t.g.name, {{"eval_step", &t.g, names, {}}}, {.max_batch = 4});
  setenv("KILN_NO_ROW_EPILOGUE", "1", 1);
  lower::Program apart = lower::lower_program(t.g.name, {{"eval_step", &t.g, names, {}}}, {.max_batch = 4});
  unsetenv("KILN_NO_ROW_EPILOGUE");
  CHECK(p.entry("eval_step")->kernels.size() + 2 == apart.entry("eval_step")->kernels.size());
  int with_rows = 0;
  for (int k : p.entry("eval_step")->kernels)
    with_rows += lower::print_kernel(p, p.kernels[static_cast<size_t>(k)]).find("epilogue per row") != std::string::npos;
  CHECK(with_rows == 2);
}
