// fold-scales (issue 22): batch norm's inference form after a convolution or
// dense layer moves into the weights, so predict runs no normalization pass
// over the activations; the folded program still matches the interpreter.
#include <doctest/doctest.h>

#include "compiler/codegen/programs.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/ir/builder.h"
#include "compiler/passes/passes.h"
#include "tests/unit/codegen_helpers.h"
#include "tests/unit/test_util.h"

using namespace kiln;

TEST_CASE("fold-scales: predict's batch norm after a convolution becomes scaled weights plus a shift") {
  Graph model = load_graph(test::source_path("tests/fixtures/bn_dropout_cnn.json"));
  auto graphs = codegen::program_graphs(model, nullptr);
  const Graph& g = graphs->model;  // the inference form, simplified
  NodeId conv = kNoNode;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (g.nodes[i].op == "conv2d") conv = static_cast<NodeId>(i);
  REQUIRE(conv != kNoNode);
  const Shape activations = g.node(conv).type.shape;
  CHECK(g.node(g.node(conv).inputs[1]).op == "mul");  // conv/kernel * bn's scale
  int multiplies_over_activations = 0;
  for (const Node& n : g.nodes) multiplies_over_activations += n.op == "mul" && n.type.shape == activations;
  CHECK(multiplies_over_activations == 0);
  auto ir = test::run_kiln("ir tests/fixtures/bn_dropout_cnn.json --stage loops --entry predict --why 2>&1");
  INFO(ir.output);
  CHECK(ir.output.find("epilogue: ") != std::string::npos);  // the shift (and relu) ride on the GEMM
}

TEST_CASE("fold-scales: a dense layer's per-unit scale from params folds, one from an input does not") {
  codegen_test::JitCase c(3, 4);
  NodeId x = c.input("x", {kOpenDim, 6});
  NodeId w = c.param("w", {6, 5});
  NodeId s = c.param("s", {5}, 0.5, 1.5);
  NodeId t = c.input("t", {5});
  c.out("by_param", c.op("mul", {c.op("exp", {s}), c.op("matmul", {x, w})}));
  c.out("by_input", c.op("mul", {c.op("matmul", {x, w}), t}));
  Graph before = c.g;
  CHECK(fold_scales_into_weights(c.g));
  int folded = 0;
  for (const Node& n : c.g.nodes)
    if (n.op == "matmul") folded += c.g.node(n.inputs[1]).op == "mul";
  CHECK(folded == 1);
  c.check(1e-5);  // the folded graph, compiled, against the interpreter of the folded graph
  // and the folded graph's values are the original's
  auto want = interp::Interpreter(before, interp::Precision::f64).run(c.feeds, {"by_param", "by_input"});
  auto got = interp::Interpreter(c.g, interp::Precision::f64).run(c.feeds, {"by_param", "by_input"});
  for (const char* o : {"by_param", "by_input"})
    for (size_t i = 0; i < want.at(o).data.size(); ++i) CHECK(got.at(o).data[i] == doctest::Approx(want.at(o).data[i]).epsilon(1e-12));
}
