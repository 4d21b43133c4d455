// sink-transposes (issue 25): a channels-first network (every imported ONNX
// model) is lowered as channels-last convolutions with a transpose before
// and after each. After simplify, the transposes between convolutions are
// gone (through bias, clip and a residual add), one stays at each end, and
// the values are the original graph's.
#include <doctest/doctest.h>

#include "compiler/ir/builder.h"
#include "compiler/passes/pass_manager.h"
#include "compiler/passes/passes.h"
#include "tests/unit/codegen_helpers.h"

using namespace kiln;

namespace {

// transposes of step values (params' own are computed once per load)
int activation_transposes(const Graph& g) {
  const auto fixed = param_only_nodes(g);
  int n = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) n += g.nodes[i].op == "transpose" && !fixed[i];
  return n;
}

}  // namespace

TEST_CASE("sink-transposes: an NCHW network keeps one transpose at each end, not two per convolution") {
  codegen_test::JitCase c(2, 4);
  NodeId x = c.input("x", {kOpenDim, 3, 6, 6});
  auto block = [&](NodeId in, const std::string& name, int64_t cin, int64_t cout, int64_t groups) {
    NodeId w = c.param(name + "_w", {cout, cin / groups, 3, 3}, -0.5, 0.5);
    NodeId bias = c.param(name + "_b", {cout});
    NodeId y = c.op("conv2d", {in, w}, {{"layout", "NCHW"}, {"padding", {1, 1, 1, 1}}, {"groups", groups}});
    y = c.op("add", {y, c.op("unsqueeze", {bias}, {{"axes", {1, 2}}})});
    return c.op("minimum", {c.op("maximum", {y, c.b.constant(0)}), c.b.constant(6)});  // ONNX's Clip(0, 6)
  };
  NodeId a = block(x, "c1", 3, 4, 1);
  NodeId d = block(a, "c2", 4, 4, 4);          // depthwise
  NodeId r = c.op("add", {a, d});              // a: read by c2 and by the residual add
  NodeId s = c.op("mul", {r, c.b.constant(0.5)});
  c.out("y", block(s, "c3", 4, 5, 1));
  Graph before = c.g;
  CHECK(activation_transposes(c.g) == 6);  // in and out of each of the three convolutions
  run_pipeline(c.g, "simplify");
  CHECK(activation_transposes(c.g) == 2);  // x to channels-last, y back
  c.check(1e-5);  // compiled, against the interpreter of the simplified graph
  auto want = interp::Interpreter(before, interp::Precision::f64).run(c.feeds, {"y"});
  auto got = interp::Interpreter(c.g, interp::Precision::f64).run(c.feeds, {"y"});
  REQUIRE(want.at("y").shape == got.at("y").shape);
  for (size_t i = 0; i < want.at("y").data.size(); ++i)
    CHECK(got.at("y").data[i] == doctest::Approx(want.at("y").data[i]).epsilon(1e-12));
}

TEST_CASE("sink-transposes: a transpose another op also reads stays where it is") {
  codegen_test::JitCase c(2, 4);
  NodeId x = c.input("x", {kOpenDim, 3, 5});
  NodeId t = c.op("transpose", {x}, {{"perm", {0, 2, 1}}});
  c.out("relu", c.op("maximum", {t, c.b.constant(0)}));
  c.out("sum", c.op("reduce_sum", {t}, {{"axes", {2}}}));  // reads t itself
  CHECK_FALSE(sink_transposes(c.g));
  // Alone, it moves below the elementwise op.
  codegen_test::JitCase d(2, 4);
  NodeId y = d.input("y", {kOpenDim, 3, 5});
  NodeId u = d.op("transpose", {y}, {{"perm", {0, 2, 1}}});
  NodeId bias = d.param("bias", {3});
  d.out("z", d.op("add", {d.op("exp", {u}), bias}));
  CHECK(sink_transposes(d.g));  // below exp, then below the add (its bias laid out for y), in one sweep
  CHECK_FALSE(sink_transposes(d.g));
  const Node& last = d.g.node(d.g.output("z"));
  REQUIRE(last.op == "transpose");
  CHECK(d.g.node(last.inputs[0]).op == "add");
  d.check(1e-6);
}

TEST_CASE("sink-transposes: a reduction of a transpose reduces its input over the permuted axes") {
  codegen_test::JitCase c(2, 4);
  // A global average pool of a channels-first view of channels-last values:
  // the sum reads x itself, and [N, 1, 1, C] -> [N, C, 1, 1] is a reshape.
  NodeId x = c.input("x", {kOpenDim, 4, 5, 3});
  NodeId pooled = c.op("reduce_sum", {c.op("transpose", {x}, {{"perm", {0, 3, 1, 2}}})}, {{"axes", {2, 3}}, {"keepdims", true}});
  c.out("pool", pooled);
  // Over the batch axis, not kept: the kept axes swap, so a transpose of the [5, 3] result stays.
  NodeId y = c.input("y", {kOpenDim, 3, 5});
  c.out("max", c.op("reduce_max", {c.op("transpose", {y}, {{"perm", {0, 2, 1}}})}, {{"axes", {0}}}));
  // Kept axes in order: no permutation at all.
  NodeId z = c.input("z", {kOpenDim, 3, 5}, 0.5, 1.5);
  c.out("prod", c.op("reduce_prod", {c.op("transpose", {z}, {{"perm", {0, 2, 1}}})}, {{"axes", {-2}}}));
  Graph before = c.g;
  CHECK(sink_transposes(c.g));
  eliminate_dead_code(c.g);
  const Node& pool = c.g.node(c.g.output("pool"));
  REQUIRE(pool.op == "reshape");
  CHECK(c.g.node(pool.inputs[0]).op == "reduce_sum");
  CHECK(c.g.node(pool.inputs[0]).inputs[0] == c.g.find("x"));
  CHECK(c.g.node(pool.inputs[0]).attrs.at("axes") == nlohmann::json({1, 2}));
  const Node& mx = c.g.node(c.g.output("max"));
  REQUIRE(mx.op == "transpose");
  CHECK(mx.attrs.at("perm") == nlohmann::json({1, 0}));
  CHECK(c.g.node(mx.inputs[0]).inputs[0] == c.g.find("y"));
  const Node& prod = c.g.node(c.g.output("prod"));
  CHECK(prod.op == "reduce_prod");
  CHECK(prod.inputs[0] == c.g.find("z"));
  CHECK(prod.attrs.at("axes") == nlohmann::json({2}));
  c.check(1e-5);  // compiled, against the interpreter of the rewritten graph
  for (const char* out : {"pool", "max", "prod"}) {
    auto want = interp::Interpreter(before, interp::Precision::f64).run(c.feeds, {out});
    auto got = interp::Interpreter(c.g, interp::Precision::f64).run(c.feeds, {out});
    REQUIRE(want.at(out).shape == got.at(out).shape);
    for (size_t i = 0; i < want.at(out).data.size(); ++i)
      CHECK(got.at(out).data[i] == doctest::Approx(want.at(out).data[i]).epsilon(1e-12));
  }
}
