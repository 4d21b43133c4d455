// Inline nodes in a graph's inputs lists (as update rules allow): hoisted into
// nodes named after their reader, and errors inside them located at their
// place in the file.
#include <doctest/doctest.h>

#include "compiler/frontend/graph_json.h"

using namespace kiln;

TEST_CASE("frontend: inline nodes and numbers in inputs become nodes named after their reader") {
  Graph g = parse_graph(R"({
    "format": "kiln.graph/1", "name": "inline",
    "inputs": {"y": {"shape": [-1, 3]}, "t": {"shape": [-1, 3]}},
    "nodes": [
      {"name": "loss", "op": "reduce_sum",
       "inputs": [{"op": "mul", "inputs": [0.5, {"op": "square", "inputs": [{"op": "sub", "inputs": ["y", "t"]}]}]}]},
      {"name": "scaled", "op": "mul", "inputs": [{"name": "half", "op": "constant", "value": 0.5}, "loss"]}
    ],
    "outputs": {"loss": "loss", "scaled": "scaled"}})");
  for (const char* name : {"loss/0", "loss/0/0", "loss/0/1", "loss/0/1/0", "half"}) {
    CAPTURE(name);
    CHECK(g.find(name) != kNoNode);
  }
  CHECK(g.node(g.find("loss/0/1/0")).op == "sub");
  CHECK(g.node(g.find("loss/0/0")).op == "constant");
  CHECK(g.node(g.find("loss/0")).inputs.size() == 2);
}

TEST_CASE("frontend: an error inside an inline node names its place in the file and its generated name") {
  try {
    parse_graph(R"({
      "format": "kiln.graph/1", "name": "inline_bad",
      "inputs": {"x": {"shape": [-1, 3]}},
      "nodes": [{"name": "out", "op": "relu", "inputs": [{"op": "reduce_sum", "axes": [5], "inputs": ["x"]}]}],
      "outputs": {"out": "out"}})");
    FAIL("the graph loaded");
  } catch (const GraphError& e) {
    REQUIRE(e.diagnostics.size() == 1);
    const Diagnostic& d = e.diagnostics[0];
    INFO(d.path << " (" << d.node << "): " << d.message);
    CHECK(d.path.rfind("/nodes/0/inputs/0", 0) == 0);
    CHECK(d.node == "out/0");
    CHECK(d.message.find("axis 5 is out of range") != std::string::npos);
  }
}

TEST_CASE("frontend: a layer's activation is any registered activation, by name or with its attributes") {
  auto graph = [](const std::string& activation) {
    return R"({"format": "kiln.graph/1", "name": "act", "inputs": {"x": {"shape": [-1, 4]}},
      "nodes": [{"name": "h", "layer": "dense", "inputs": ["x"], "units": 3, "activation": )" + activation + R"(}],
      "outputs": {"h": "h"}})";
  };
  Graph g = parse_graph(graph(R"({"kind": "leaky_relu", "alpha": 0.25})"));
  bool leaky = false;
  for (const Node& n : g.nodes) leaky = leaky || (n.op == "mul" && n.origin == "h");
  CHECK(leaky);
  CHECK_NOTHROW(parse_graph(graph(R"("gelu")")));
  CHECK_NOTHROW(parse_graph(graph(R"("tanh")")));
  for (auto [bad, phrase] : std::vector<std::pair<std::string, std::string>>{
           {R"("tanhh")", "unknown activation 'tanhh' (did you mean 'tanh'?)"},
           {R"({"kind": "elu", "alfa": 1})", "unknown attribute 'alfa' for elu (did you mean 'alpha'?)"},
           {R"(3)", "expected an activation's name or an object"}}) {
    CAPTURE(bad);
    try {
      parse_graph(graph(bad));
      FAIL("accepted");
    } catch (const GraphError& e) {
      REQUIRE(e.diagnostics.size() == 1);
      INFO(e.diagnostics[0].path << ": " << e.diagnostics[0].message);
      CHECK(e.diagnostics[0].path == "/nodes/0/activation");
      CHECK(e.diagnostics[0].message.find(phrase) != std::string::npos);
    }
  }
}
