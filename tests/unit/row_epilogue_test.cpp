// Row epilogues (compiler/lower/row_epilogue.h): the elementwise kernel after
// a depthwise convolution (a bias and a clip: batch norm folded, then ReLU6)
// runs inside it on each pixel's channels. It must give the interpreter's
// values and the unfused kernels' bits (KILN_NO_ROW_EPILOGUE=1) at every
// vector width, with a per-channel operand (rows x columns nest) and a flat
// consumer alike; a convolution whose output has two readers keeps its own.
// A consumer that writes the arena takes the producer's sums into its own
// buffer and finishes them there, so the producer's value takes no memory.
// 3x3 windows sum their taps in registers, 9x9 ones loop over the taps.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>

#include "compiler/codegen/codegen.h"
#include "compiler/lower/lower_program.h"
#include "tests/unit/codegen_helpers.h"

using namespace kiln;
using kiln::codegen_test::JitCase;

namespace {

// A depthwise `size` x `size` convolution over `channels` channels (not a multiple of any vector width).
NodeId depthwise_of(JitCase& t, const std::string& name, NodeId x, int64_t channels, Attrs attrs, int64_t size = 3) {
  attrs["groups"] = channels;
  return t.op("conv2d", {x, t.input(name + "_w", {size, size, 1, channels})}, attrs);
}
NodeId depthwise(JitCase& t, const std::string& name, int64_t channels, Attrs attrs, int64_t size = 3) {
  return depthwise_of(t, name, t.input(name + "_x", {-1, 9, 10, channels}), channels, attrs, size);
}

// Returns the first of the two chained convolutions.
NodeId build(JitCase& t) {
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
  // A clipped depthwise convolution read by another: the first's sums go
  // straight into the clip's buffer (in the arena), finished there.
  NodeId first = depthwise(t, "first", 11, {{"padding", "same"}});
  NodeId clipped = t.op("clip", {first}, {{"min", 0.0}, {"max", 6.0}});
  t.out("chained", depthwise_of(t, "second", clipped, 11, {{"padding", "valid"}}));
  // 9 x 9 taps: summed by a loop over the taps, not unrolled into registers.
  t.out("wide", t.op("relu", {depthwise(t, "wide", 5, {{"padding", "same"}}, 9)}));
  return first;
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
    for (const char* name : {"relu6", "tanh", "shared_exp", "shared_neg", "chained", "wide"}) {
      CAPTURE(name);
      CHECK(fused.at(name).data == apart.at(name).data);
    }
  }
}

TEST_CASE("row epilogue: which consumers go in, and why the others stay out") {
  JitCase t(3, 4);
  const NodeId first = build(t);
  auto why = lowering_notes(t);
  auto count = [&](const std::string& what) {
    return std::count_if(why.begin(), why.end(), [&](const std::string& l) { return l.find(what) != std::string::npos; });
  };
  CHECK(count(": row epilogue: ") == 5);  // (the second chained convolution's: the copy to the output)
  CHECK(count("no row epilogue: its product has several readers") == 1);
  // The consumers that write the arena (all but the output copy) finish their producer's sums in place.
  CHECK(count("finished there in place") == 4);
  // The fused kernels compute the consumers' nodes; theirs are gone.
  std::vector<std::string> names;
  for (auto& [n, id] : t.g.outputs) names.push_back(n);
  lower::Program p = lower::lower_program(t.g.name, {{"eval_step", &t.g, names, {}}}, {.max_batch = 4});
  setenv("KILN_NO_ROW_EPILOGUE", "1", 1);
  lower::Program apart = lower::lower_program(t.g.name, {{"eval_step", &t.g, names, {}}}, {.max_batch = 4});
  unsetenv("KILN_NO_ROW_EPILOGUE");
  CHECK(p.entry("eval_step")->kernels.size() + 5 == apart.entry("eval_step")->kernels.size());
  int with_rows = 0;
  for (int k : p.entry("eval_step")->kernels)
    with_rows += lower::print_kernel(p, p.kernels[static_cast<size_t>(k)]).find("epilogue per row") != std::string::npos;
  CHECK(with_rows == 5);
  // The first convolution's own value takes no bytes: no arena buffer holds it, fused; one does, apart.
  auto holds_first = [&](const lower::Program& q) {
    const lower::Entry& e = *q.entry("eval_step");
    return std::count_if(e.arena_buffers.begin(), e.arena_buffers.end(),
                         [&](int b) { return q.buffers[static_cast<size_t>(b)].node == first; });
  };
  CHECK(holds_first(p) == 0);
  CHECK(holds_first(apart) == 1);
}
