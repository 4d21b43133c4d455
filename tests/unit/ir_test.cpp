// The Graph IR: builder type inference, composite expansion, verify(), printing.
#include <doctest/doctest.h>

#include "compiler/frontend/graph_json.h"
#include "compiler/ir/builder.h"
#include "compiler/ops/registry.h"

using namespace kiln;

TEST_CASE("builder infers matmul and broadcasting shapes with an open batch") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {kOpenDim, 3072}});
  NodeId w = b.param("w", {DType::f32, {3072, 1024}});
  NodeId bias = b.param("b", {DType::f32, {1024}});
  NodeId h = b.add("matmul", {x, w});
  NodeId y = b.add("add", {h, bias});
  CHECK(b.type(h).shape == Shape{kOpenDim, 1024});
  CHECK(b.type(y).shape == Shape{kOpenDim, 1024});
  NodeId hT = b.add("matmul", {x, h}, {{"transpose_a", true}});  // x^T h: [3072, 1024]
  CHECK(b.type(hT).shape == Shape{3072, 1024});
  CHECK(verify(g).empty());
}

TEST_CASE("shape errors name both shapes and the offending dimension") {
  Graph g;
  GraphBuilder b(g);
  NodeId a = b.input("a", {DType::f32, {4, 3}});
  NodeId c = b.input("c", {DType::f32, {5, 2}});
  try {
    b.add("matmul", {a, c});
    FAIL("expected an OpError");
  } catch (const OpError& e) {
    std::string m = e.what();
    CHECK(m.find("[4,3]") != std::string::npos);
    CHECK(m.find("[5,2]") != std::string::npos);
    CHECK(m.find("K=3") != std::string::npos);
  }
  CHECK_THROWS_WITH_AS(b.add("add", {a, c}), doctest::Contains("dimension 0 is 4 vs 5"), OpError);
  CHECK(g.nodes.size() == 2);  // failed adds leave the graph unchanged
}

TEST_CASE("composites expand to primitives and keep their name on the result") {
  Graph g;
  GraphBuilder b(g);
  NodeId logits = b.input("logits", {DType::f32, {kOpenDim, 10}});
  NodeId labels = b.input("labels", {DType::i32, {kOpenDim}});
  NodeId loss = b.add("sparse_softmax_cross_entropy", {logits, labels}, {}, "loss");
  CHECK(g.node(loss).name == "loss");
  CHECK(b.type(loss).shape.empty());
  for (const Node& n : g.nodes) CHECK_FALSE(OpRegistry::get().find(n.op)->composite());
  // reduce_mean over the open batch reads the batch size at run time.
  CHECK(g.nodes_with_op("dim_size").size() == 1);
  CHECK(verify(g).empty());
}

TEST_CASE("verify catches a node whose recorded type is wrong and an out-of-order input") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {2, 3}});
  NodeId y = b.add1("exp", x);
  g.node(y).type.shape = {3, 2};
  auto problems = verify(g);
  REQUIRE(problems.size() == 1);
  CHECK(problems[0].find("recorded type f32[3,2] but its op infers f32[2,3]") != std::string::npos);
  g.node(y).type.shape = {2, 3};
  g.node(x).inputs = {y};
  CHECK_FALSE(verify(g).empty());
}

TEST_CASE("conv2d and maxpool2d follow TF's valid and same geometry") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {kOpenDim, 28, 28, 1}});
  NodeId w = b.param("w", {DType::f32, {3, 3, 1, 32}});
  CHECK(b.type(b.add("conv2d", {x, w})).shape == Shape{kOpenDim, 26, 26, 32});
  CHECK(b.type(b.add("conv2d", {x, w}, {{"padding", "same"}, {"strides", {2, 2}}})).shape == Shape{kOpenDim, 14, 14, 32});
  NodeId y = b.input("y", {DType::f32, {1, 11, 11, 64}});
  CHECK(b.type(b.add("maxpool2d", {y})).shape == Shape{1, 5, 5, 64});
  CHECK(b.type(b.add("maxpool2d", {y}, {{"padding", "same"}})).shape == Shape{1, 6, 6, 64});
}

TEST_CASE("the experiment graphs load with the seed's parameter counts") {
  Graph cnn = load_graph(std::string(KILN_SOURCE_DIR) + "/graphs/cnn_mnist.json");
  CHECK(param_count(cnn) == 56394);
  CHECK(param_count(cnn, true) == 56394);
  Graph transfer = load_graph(std::string(KILN_SOURCE_DIR) + "/graphs/cnn_mnist_transfer.json");
  CHECK(param_count(transfer) == 55809);
  CHECK(param_count(transfer, true) == 65);
  Graph mlp = load_graph(std::string(KILN_SOURCE_DIR) + "/graphs/mlp_cifar10.json");
  CHECK(param_count(mlp) == 3157002);
  CHECK(mlp.node(mlp.output("logits")).type.shape == Shape{kOpenDim, 10});
}

TEST_CASE("print_graph shows ops, operands, types and origins") {
  Graph g = parse_graph(R"({"format": "kiln.graph/1", "name": "tiny",
    "inputs": {"x": {"shape": [-1, 4]}},
    "nodes": [{"name": "s", "op": "log_softmax", "inputs": ["x"]}],
    "outputs": {"probabilities": "s"}})");
  std::string text = print_graph(g);
  CHECK(text.find("%x = input() : f32[?,4]") != std::string::npos);
  CHECK(text.find("%s = sub(") != std::string::npos);  // the composite's result is named s
  CHECK(text.find("output probabilities = %s") != std::string::npos);
  CHECK(print_dot(g).find("digraph \"tiny\"") != std::string::npos);
}
