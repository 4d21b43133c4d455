// The autodiff pass's structure: fan-out sums, pruning of frozen params,
// first-max routing of reduce_max, clear errors, and the training step's shape.
#include <doctest/doctest.h>

#include <cmath>

#include "compiler/autodiff/autodiff.h"
#include "compiler/autodiff/train_step.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/interp/interpreter.h"
#include "compiler/ir/builder.h"

using namespace kiln;
using interp::Value;

namespace {

Value fetch_one(const Graph& g, const std::map<std::string, Value>& feeds, const std::string& name) {
  return interp::Interpreter(g, interp::Precision::f64).run(feeds, {name}).at(name);
}

size_t count_op(const Graph& g, const std::string& op) { return g.nodes_with_op(op).size(); }

}  // namespace

TEST_CASE("autodiff: a param used twice gets the sum of both cotangents") {
  // loss = sum(w * w + 3 w)  ->  d loss / d w = 2 w + 3
  Graph g;
  GraphBuilder b(g);
  NodeId w = b.param("w", {DType::f32, {3}});
  NodeId loss = b.add1("reduce_sum", b.add2("add", b.add2("mul", w, w), b.add2("mul", b.constant(3.0), w)));
  Gradients grads = differentiate(g, loss, {w});
  verify_or_throw(g, "autodiff");
  g.outputs = {{"dw", grads.of.at(w)}};
  Value dw = fetch_one(g, {{"w", {DType::f32, {3}, {0.5, -1.0, 2.0}}}}, "dw");
  CHECK(dw.data == std::vector<double>{4.0, 1.0, 7.0});
}

TEST_CASE("autodiff: reduce_max sends the gradient to the first maximal element only") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.param("x", {DType::f32, {2, 3}});
  NodeId row_max = b.add("reduce_max", {x}, {{"axes", {1}}});
  NodeId all_max = b.add("reduce_max", {x}, {{"axes", {0, 1}}});
  NodeId loss = b.add2("add", b.add1("reduce_sum", b.add2("mul", row_max, b.constant_tensor({10, 100}, {2}))), all_max);
  Gradients grads = differentiate(g, loss, {x});
  g.outputs = {{"dx", grads.of.at(x)}};
  // Row 0 ties at columns 0 and 2, row 1 at columns 1 and 2; the overall max 5 appears at (0,0), (0,2).
  Value dx = fetch_one(g, {{"x", {DType::f32, {2, 3}, {5, 1, 5, 0, 4, 4}}}}, "dx");
  CHECK(dx.data == std::vector<double>{10 + 1, 0, 0, 0, 100, 0});
}

TEST_CASE("autodiff: softmax's max shift carries no gradient (no argmax, no one-hot), and the gradient is exact") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.param("x", {DType::f32, {2, 3}});
  const std::vector<double> c = {1, 2, 3, -1, 0, 4};
  NodeId loss = b.add1("reduce_sum", b.add2("mul", b.add("softmax", {x}), b.constant_tensor(c, {2, 3})));
  Gradients grads = differentiate(g, loss, {x});
  g.outputs = {{"dx", grads.of.at(x)}};
  CHECK(count_op(g, "argmax") == 0);
  CHECK(count_op(g, "one_hot") == 0);
  // d/dx_i sum_j c_j y_j = y_i (c_i - sum_j c_j y_j), row by row.
  const std::vector<double> xs = {0.5, 3.0, -1.0, 2.0, 2.0, 7.0};
  Value dx = fetch_one(g, {{"x", {DType::f32, {2, 3}, xs}}}, "dx");
  for (int r = 0; r < 2; ++r) {
    double z = 0, cy = 0;
    for (int j = 0; j < 3; ++j) z += std::exp(xs[r * 3 + j]);
    for (int j = 0; j < 3; ++j) cy += c[r * 3 + j] * std::exp(xs[r * 3 + j]) / z;
    for (int j = 0; j < 3; ++j) {
      const double y = std::exp(xs[r * 3 + j]) / z;
      CHECK(dx.data[r * 3 + j] == doctest::Approx(y * (c[r * 3 + j] - cy)).epsilon(1e-12));
    }
  }
}

TEST_CASE("autodiff: a gradient through an op without a rule is an error naming the node and op") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {1, 4, 4, 1}});
  NodeId w = b.param("w", {DType::f32, {1, 4, 4, 1}});
  NodeId dy = b.constant_tensor(std::vector<double>(4, 1.0), {1, 2, 2, 1});
  NodeId routed = b.add("maxpool2d_grad", {b.add2("mul", x, w), dy}, {{"pool", {2, 2}}}, "routed");
  NodeId loss = b.add1("reduce_sum", routed);
  try {
    differentiate(g, loss, {w});
    FAIL("expected an AutodiffError");
  } catch (const AutodiffError& e) {
    std::string msg = e.what();
    CHECK(msg.find("%routed") != std::string::npos);
    CHECK(msg.find("maxpool2d_grad") != std::string::npos);
  }
}

TEST_CASE("autodiff: no cotangents for nodes off the param-to-loss paths") {
  // loss = sum(x * w) + sum(x * v) with v frozen: nothing is built for v's branch.
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {-1, 3}});
  NodeId w = b.param("w", {DType::f32, {3}});
  NodeId v = b.param("v", {DType::f32, {3}}, {{"trainable", false}});
  NodeId xv = b.add2("mul", x, v);
  NodeId loss = b.add2("add", b.add1("reduce_sum", b.add2("mul", x, w)), b.add1("reduce_sum", xv));
  Gradients grads = differentiate(g, loss, trainable_params(g));
  CHECK(trainable_params(g) == std::vector<NodeId>{w});
  CHECK(grads.cotangents.count(xv) == 0);
  CHECK(grads.cotangents.count(x) == 0);
  CHECK(grads.of.size() == 1);
}

TEST_CASE("train step: the transfer graph (frozen base) updates only the head and builds no conv backprop") {
  Graph model = load_graph(KILN_SOURCE_DIR "/graphs/cnn_mnist_transfer.json");
  TrainStepConfig config;
  config.optimizer = builtin_update_rule("adam");
  Graph step = build_train_step(model, config);
  CHECK(count_op(step, "conv2d_backprop_input") == 0);
  CHECK(count_op(step, "conv2d_backprop_filter") == 0);
  CHECK(count_op(step, "maxpool2d_grad") == 0);
  std::vector<std::string> param_updates, state_updates;
  for (auto& [target, value] : step.updates) {
    const Node& n = step.node(target);
    (n.attrs.value("role", std::string("param")) == "param" ? param_updates : state_updates).push_back(n.name);
  }
  CHECK(param_updates == std::vector<std::string>{"head/kernel", "head/bias"});
  // Adam's m and v for both, and the step counter.
  CHECK(state_updates == std::vector<std::string>{"head/kernel/m", "head/kernel/v", "head/bias/m", "head/bias/v", "step"});
  CHECK(step.output("head/kernel@next") != kNoNode);
  CHECK(step.output("conv1/kernel@next") == kNoNode);
  CHECK(step.find("lr") != kNoNode);

  // Unfrozen (E4d), every conv gets both backprop ops except the first, whose input needs none.
  for (NodeId p : model.params()) model.node(p).attrs["trainable"] = true;
  Graph finetune = build_train_step(model, config);
  CHECK(count_op(finetune, "conv2d_backprop_filter") == 3);
  CHECK(count_op(finetune, "conv2d_backprop_input") == 2);
  CHECK(count_op(finetune, "maxpool2d_grad") == 3);
}

TEST_CASE("train step: eval and predict graphs have the promised outputs and no updates") {
  Graph model = load_graph(KILN_SOURCE_DIR "/graphs/cnn_mnist.json");
  Graph eval = build_eval_step(model);
  REQUIRE(eval.outputs.size() == 2);
  CHECK(eval.outputs[0].first == "loss");
  CHECK(eval.outputs[1].first == "correct");
  CHECK(eval.updates.empty());
  Graph predict = build_predict(model);
  REQUIRE(predict.outputs.size() == 1);
  CHECK(predict.outputs[0].first == "probabilities");
  // predict needs no labels: the label input stays (interface) but nothing reads it.
  CHECK(count_op(predict, "one_hot") == 0);
  Value x{DType::f32, {2, 28, 28, 1}, std::vector<double>(2 * 28 * 28, 0.5)};
  auto feeds = interp::init_params(model);
  feeds["x"] = x;
  Value p = interp::Interpreter(predict, interp::Precision::f64).run(feeds, {"probabilities"}).at("probabilities");
  REQUIRE(p.shape == Shape{2, 10});
  double row_sum = 0;
  for (int i = 0; i < 10; ++i) row_sum += p.data[static_cast<size_t>(i)];
  CHECK(row_sum == doctest::Approx(1.0).epsilon(1e-12));
}
