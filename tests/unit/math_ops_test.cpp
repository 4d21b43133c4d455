// The math and activation ops on the values the registry sweep's random
// draws never reach (NaN, infinities, exact ties, integer signs), erf's
// accuracy, and fusion: a chain of the new elementwise ops is one kernel.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "codegen_helpers.h"
#include "compiler/lower/lower_program.h"

using namespace kiln;
using codegen_test::JitCase;

TEST_CASE("math ops: NaN and infinity tests, round ties to even, sign, clip, on exact values (JIT and interpreter)") {
  JitCase t(6, 8);
  NodeId x = t.input("x", {-1}, -1, 1);
  t.feeds["x"].data = {NAN, INFINITY, -INFINITY, 2.5, -0.5, 1.5};
  t.out("isnan", t.op("isnan", {x}));
  t.out("isinf", t.op("isinf", {x}));
  NodeId finite = t.input("f", {-1});
  t.feeds["f"].data = {0.5, 1.5, 2.5, -0.5, -2.5, 0.0};
  t.out("round", t.op("round", {finite}));
  t.out("sign", t.op("sign", {finite}));
  t.out("clip", t.op("clip", {finite}, {{"min", -1.0}, {"max", 1.0}}));
  auto got = t.check(0);
  CHECK(got.at("isnan").data == std::vector<double>{1, 0, 0, 0, 0, 0});
  CHECK(got.at("isinf").data == std::vector<double>{0, 1, 1, 0, 0, 0});
  CHECK(got.at("round").data == std::vector<double>{0, 2, 2, -0.0, -2, 0});
  CHECK(got.at("sign").data == std::vector<double>{1, 1, 1, -1, -1, 0});
  CHECK(got.at("clip").data == std::vector<double>{0.5, 1, 1, -0.5, -1, 0});
}

TEST_CASE("math ops: mod takes the divisor's sign, for integers and floats alike") {
  JitCase t(4, 4);
  NodeId a = t.input("a", {-1}, 0, 1, DType::i32), b = t.input("b", {-1}, 0, 1, DType::i32);
  t.feeds["a"].data = {7, -7, 7, -7};
  t.feeds["b"].data = {3, 3, -3, -3};
  NodeId fa = t.input("fa", {-1}), fb = t.input("fb", {-1});
  t.feeds["fa"].data = {7.5, -7.5, 7.5, -7.5};
  t.feeds["fb"].data = {2, 2, -2, -2};
  t.out("int", t.op("mod", {a, b}));
  t.out("float", t.op("mod", {fa, fb}));
  auto got = t.check(1e-6);
  CHECK(got.at("int").data == std::vector<double>{1, 2, -2, -1});  // Python: 7 % 3, -7 % 3, 7 % -3, -7 % -3
  CHECK(got.at("float").data == std::vector<double>{1.5, 0.5, -0.5, -1.5});
}

TEST_CASE("math ops: compiled erf is within 4e-7 of std::erf on [-5, 5], and gelu's two forms agree to 1e-3") {
  JitCase t(1, 1);
  NodeId x = t.input("x", {1, 2001});
  for (size_t i = 0; i < 2001; ++i) t.feeds["x"].data[i] = static_cast<float>(-5 + 0.005 * static_cast<double>(i));
  t.out("erf", t.op("erf", {x}));
  t.out("gelu", t.op("gelu", {x}));
  t.out("gelu_tanh", t.op("gelu", {x}, {{"approximate", "tanh"}}));
  auto got = t.check(2e-6);
  double worst = 0, apart = 0;
  for (size_t i = 0; i < 2001; ++i) {
    worst = std::max(worst, std::fabs(got.at("erf").data[i] - std::erf(t.feeds["x"].data[i])));
    apart = std::max(apart, std::fabs(got.at("gelu").data[i] - got.at("gelu_tanh").data[i]));
  }
  MESSAGE("max |erf - std::erf| = " << worst << ", max |gelu - gelu(tanh)| = " << apart);
  CHECK(worst < 4e-7);
  CHECK(apart < 1e-3);
  CHECK(apart > 1e-5);  // the two forms are different functions
}

TEST_CASE("fusion: a chain of math ops and activations is one kernel") {
  Graph g;
  g.name = "chain";
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {-1, 33}});
  NodeId y = b.add1("tanh", x);
  for (const char* op : {"gelu", "silu", "softplus", "hard_swish", "elu", "selu", "leaky_relu", "abs", "sin"})
    y = b.add1(op, y);
  y = b.add("clip", {b.add2("pow", b.add1("exp", y), b.add1("cos", x))}, {{"min", 0.0}, {"max", 6.0}});
  y = b.add2("minimum", y, b.add2("mod", x, b.scalar_like(0.75, x)));
  g.outputs.push_back({"y", y});
  std::vector<std::string> why;
  lower::Program p = lower::lower_program("chain", {{"predict", &g, {"y"}, {}}}, {.max_batch = 8, .fuse = true, .why = &why});
  std::string reasons;
  for (auto& w : why) reasons += w + "\n";
  INFO(reasons);
  // One loop computes every node; the entry's other kernel copies it to the output.
  int computing = 0;
  for (int k : p.entry("predict")->kernels)
    if (p.kernels[static_cast<size_t>(k)].comment.rfind("output ", 0) != 0) ++computing;
  CHECK(computing == 1);
  lower::Program unfused = lower::lower_program("chain", {{"predict", &g, {"y"}, {}}}, {.max_batch = 8, .fuse = false});
  CHECK(unfused.entry("predict")->kernels.size() > 30);
}

// max and min against a constant bound compile to one compare (emit_expr.cpp)
// and keep the two-compare form's results: a NaN passes through, -0 against
// a bound of 0 gives the bound (+0), a tie gives the bound. 20 values: a
// vector's worth and a scalar tail on every host.
TEST_CASE("math ops: relu and clip against constant bounds pass NaN through and give +0 for -0, vector and tail") {
  JitCase t(20, 20);
  NodeId x = t.input("x", {-1});
  const std::vector<double> in{NAN, -0.0, 0.0, INFINITY, -INFINITY, 6.0, 7.0, -1.0, 3.0, -2.0,
                               -0.0, 2.0, NAN, 8.0, 0.0, -3.0, 5.0, -0.0, NAN, 6.0};
  t.feeds["x"].data = in;
  t.out("relu", t.op("relu", {x}));
  t.out("clip", t.op("clip", {x}, {{"min", 0.0}, {"max", 6.0}}));
  // (t.check's relative bound is NaN with a NaN in the reference: the values are checked here)
  auto cp = codegen::compile_entries("bounds", {{"eval_step", &t.g, {"relu", "clip"}, {}}}, {.max_batch = 20});
  const auto got = codegen_test::run_on_threads(*cp, "eval_step", 20, t.feeds).at(0);
  for (size_t i = 0; i < in.size(); ++i) {
    CAPTURE(i);
    const double relu = got.at("relu").data[i], clip = got.at("clip").data[i];
    if (std::isnan(in[i])) {
      CHECK(std::isnan(relu));
      CHECK(std::isnan(clip));
      continue;
    }
    CHECK(relu == std::max(in[i], 0.0));
    CHECK(clip == std::min(std::max(in[i], 0.0), 6.0));
    CHECK(!std::signbit(relu));
    CHECK(!std::signbit(clip));
  }
}
