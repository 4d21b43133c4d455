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

TEST_CASE("frontend: a split node without index defines one node per part, <name>/k") {
  Graph g = parse_graph(R"({
    "format": "kiln.graph/1", "name": "split",
    "inputs": {"x": {"shape": [-1, 12]}},
    "nodes": [
      {"name": "qkv", "op": "split", "axis": 1, "sizes": [4, 4, 4], "inputs": ["x"]},
      {"name": "halves", "op": "split", "axis": -1, "parts": 2, "inputs": [{"op": "neg", "inputs": ["x"]}]},
      {"name": "s", "op": "add", "inputs": ["qkv/0", "qkv/2"]},
      {"name": "h", "op": "mul", "inputs": ["halves/0", "halves/1"]}
    ],
    "outputs": {"s": "s", "h": "h"}})");
  CHECK(g.node(g.find("s")).type.shape == Shape{kOpenDim, 4});
  CHECK(g.node(g.find("h")).type.shape == Shape{kOpenDim, 6});
  const Node& q2 = g.node(g.find("qkv/2"));
  CHECK(q2.op == "slice");
  CHECK(q2.attrs.at("starts") == nlohmann::json({8}));
  CHECK(g.node(g.find("halves/1")).attrs.at("starts") == nlohmann::json({6}));
  CHECK(g.find("qkv/1") != kNoNode);  // defined though nothing reads it

  auto error_of = [](const std::string& nodes) {
    try {
      parse_graph(R"({"format": "kiln.graph/1", "name": "bad", "inputs": {"x": {"shape": [-1, 12]}},
        "nodes": [)" + nodes + R"(], "outputs": {"y": "y"}})");
    } catch (const GraphError& e) {
      REQUIRE(!e.diagnostics.empty());
      return e.diagnostics[0].path + ": " + e.diagnostics[0].message;
    }
    return std::string("loaded");
  };
  // The whole split read as one value: the message names the parts.
  CHECK(error_of(R"({"name": "p", "op": "split", "axis": 1, "parts": 3, "inputs": ["x"]},
                    {"name": "y", "op": "relu", "inputs": ["p"]})") ==
        "/nodes/1/inputs/0: 'p' is a split into 3 parts: read one of them, 'p/0' to 'p/2'");
  CHECK(error_of(R"({"name": "y", "op": "split", "axis": 1, "sizes": [5, 4], "index": 0, "inputs": ["x"]})")
            .find("sizes sum to 9, but axis 1 has length 12") != std::string::npos);
  CHECK(error_of(R"({"name": "y", "op": "split", "axis": 0, "parts": 2, "index": 0, "inputs": ["x"]})")
            .find("cannot split along the open batch dimension") != std::string::npos);
  CHECK(error_of(R"({"name": "y", "op": "split", "axis": 1, "sizes": [6, 6], "parts": 2, "inputs": ["x"]})")
            .find("give either sizes or parts") != std::string::npos);
  CHECK(error_of(R"({"name": "y", "op": "split", "axis": 1, "parts": 5, "index": 4, "inputs": ["x"]})")
            .find("5 parts of 3 leave nothing for the last") != std::string::npos);
}
