// Counter-based randomness (issue 22): Philox-4x32-10 against the published
// known-answer vectors, and dropout built on it: the kept fraction, the
// scaling, masks that change with the step, JIT = interpreter bit for bit,
// and no dropout in inference.
#include <doctest/doctest.h>

#include "compiler/codegen/jit.h"
#include "compiler/interp/interpreter.h"
#include "compiler/ir/builder.h"
#include "compiler/passes/modes.h"
#include "runtime/program.h"
#include "runtime/random/philox.h"
#include "runtime/thread_pool.h"

using namespace kiln;

TEST_CASE("philox4x32-10 matches the Random123 known-answer vectors") {
  using random::philox4x32;
  CHECK(philox4x32({0, 0, 0, 0}, {0, 0}) == random::Counter{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(philox4x32({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        random::Counter{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(philox4x32({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        random::Counter{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

namespace {

// dropout(x) of ones in training at `step`, compiled and interpreted.
struct DropoutRun {
  interp::Value jit, interp;
};

DropoutRun run_dropout(double rate, int64_t step, int64_t batch, int threads = 1) {
  Graph g;
  g.name = "dropout";
  g.source = {{"seed", 42}};
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {kOpenDim, 1000}});
  NodeId s = b.input("step", {DType::i64, {}});
  g.outputs.push_back({"y", b.add("dropout", {x}, {{"rate", rate}}, "drop")});
  specialize_mode(g, {Mode::train, s, graph_seed(g)});
  std::map<std::string, interp::Value> feeds = {
      {"x", {DType::f32, {batch, 1000}, std::vector<double>(static_cast<size_t>(batch * 1000), 1.0)}},
      {"step", {DType::i64, {}, {static_cast<double>(step)}}}};
  auto cp = codegen::compile_entries(g.name, {{"eval_step", &g, {"y"}, {}}}, {.max_batch = 64});
  ThreadPool pool(threads);
  Program prog(cp->info(), &pool);
  DropoutRun r;
  r.jit = codegen::run_entry(prog, "eval_step", batch, feeds).at("y");
  r.interp = interp::Interpreter(g, interp::Precision::f32).run(feeds, {"y"}).at("y");
  return r;
}

}  // namespace

TEST_CASE("dropout: the kept fraction, the scaling, fresh masks each step, the same bits compiled and interpreted") {
  const double rate = 0.3;
  DropoutRun a = run_dropout(rate, 5, 50);
  CHECK(a.jit.data == a.interp.data);  // bit for bit: the compiled Philox is the reference's
  size_t zeros = 0;
  for (double v : a.jit.data) {
    if (v == 0) ++zeros;
    else CHECK(v == doctest::Approx(1 / (1 - rate)).epsilon(1e-6));
  }
  const double fraction = static_cast<double>(zeros) / static_cast<double>(a.jit.data.size());
  CHECK(fraction == doctest::Approx(rate).epsilon(0.01 / rate));  // within ±1% of 50,000 elements
  DropoutRun next = run_dropout(rate, 6, 50);
  CHECK(next.jit.data != a.jit.data);
  CHECK(run_dropout(rate, 5, 50, 2).jit.data == a.jit.data);  // any thread count
}

TEST_CASE("dropout: inference applies none") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {kOpenDim, 4}});
  g.outputs.push_back({"y", b.add("dropout", {x}, {{"rate", 0.5}}, "drop")});
  CHECK(has_modes(g));
  specialize_mode(g, {Mode::infer});
  CHECK_FALSE(has_modes(g));
  CHECK(g.output("y") == x);
}
