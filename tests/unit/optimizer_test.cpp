// Optimizers as update graphs: GD, momentum, Adam and the seed's
// interpolation rule, run through the interpreter (f64) for 3 steps on a tiny
// graph and compared with the formulas computed by hand in the test.
#include <doctest/doctest.h>

#include <cmath>

#include "compiler/autodiff/train_step.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/interp/interpreter.h"
#include "compiler/ir/builder.h"

using namespace kiln;
using interp::Value;

namespace {

// loss = sum((w - x)^2) over a batch of one: d loss / d w = 2 (w - x).
Graph tiny_model() {
  Graph g;
  g.name = "tiny";
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {-1, 2}});
  NodeId w = b.param("w", {DType::f32, {2}}, {{"init", {{"kind", "uniform"}, {"min", -1}, {"max", 1}, {"seed", 7}}}});
  g.outputs = {{"loss", b.add1("reduce_sum", b.add1("square", b.add2("sub", w, x)))}};
  return g;
}

const std::vector<double> kX = {0.25, -0.5};

struct Stepper {
  Graph step;
  std::map<std::string, Value> state;  // params + optimizer state, by name

  Stepper(const Graph& model, TrainStepConfig config) : step(build_train_step(model, config)) {
    state = interp::init_params(model);
    for (auto& [k, v] : initial_optimizer_state(step, state)) state[k] = v;
  }
  // One step; returns the loss and moves every updated value into `state`.
  double run(double lr) {
    auto feeds = state;
    feeds["x"] = Value{DType::f32, {1, 2}, kX};
    feeds["lr"] = Value{DType::f32, {}, {lr}};
    auto out = interp::Interpreter(step, interp::Precision::f64).run(feeds);
    for (auto& [target, value] : step.updates) state[step.node(target).name] = out.at(next_value_name(step.node(target).name));
    return out.at("loss").data[0];
  }
  const std::vector<double>& w() { return state.at("w").data; }
};

void check_close(const std::vector<double>& got, const std::vector<double>& want, double rel = 1e-12) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(rel));
}

}  // namespace

TEST_CASE("optimizer: gd and momentum (Keras form) over 3 steps") {
  Graph model = tiny_model();
  Stepper gd(model, {});
  Stepper mom(model, {builtin_update_rule("momentum"), {{"momentum", 0.8}}});
  std::vector<double> w = gd.w(), wm = mom.w(), vel(2, 0.0);
  for (int s = 0; s < 3; ++s) {
    gd.run(0.1);
    mom.run(0.1);
    for (size_t i = 0; i < 2; ++i) {
      w[i] -= 0.1 * 2 * (w[i] - kX[i]);
      vel[i] = 0.8 * vel[i] - 0.1 * 2 * (wm[i] - kX[i]);
      wm[i] += vel[i];
    }
    check_close(gd.w(), w);
    check_close(mom.w(), wm);
    check_close(mom.state.at("w/velocity").data, vel);
  }
  CHECK(gd.state.at("step").data[0] == 3);
}

TEST_CASE("optimizer: adam matches Keras' formula over 3 steps") {
  Graph model = tiny_model();
  Stepper adam(model, {builtin_update_rule("adam"), {}});
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-7;
  std::vector<double> w = adam.w(), m(2, 0.0), v(2, 0.0);
  for (int t = 1; t <= 3; ++t) {
    double loss = adam.run(lr);
    double want_loss = 0;
    double lr_t = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
    for (size_t i = 0; i < 2; ++i) {
      want_loss += (w[i] - kX[i]) * (w[i] - kX[i]);
      double g = 2 * (w[i] - kX[i]);
      m[i] = b1 * m[i] + (1 - b1) * g;
      v[i] = b2 * v[i] + (1 - b2) * g * g;
      w[i] -= lr_t * m[i] / (std::sqrt(v[i]) + eps);
    }
    CHECK(loss == doctest::Approx(want_loss).epsilon(1e-12));
    check_close(adam.w(), w);
    check_close(adam.state.at("w/m").data, m);
    check_close(adam.state.at("w/v").data, v);
    CHECK(adam.state.at("step").data[0] == t);
  }
}

TEST_CASE("optimizer: the interpolation rule (graphs/optimizers/interpolated_gd.json) over 3 steps") {
  Graph model = tiny_model();
  UpdateRule rule = load_update_rule(KILN_SOURCE_DIR "/graphs/optimizers/interpolated_gd.json");
  CHECK(rule.name == "interpolated_gd");
  const double lr = 0.1, alpha = 0.25;
  Stepper interpolated(model, {rule, {{"alpha", alpha}}});
  // prev starts as a copy of the initial params.
  CHECK(interpolated.state.at("w/prev").data == interpolated.w());
  std::vector<double> theta = interpolated.w(), prev = theta;
  for (int s = 0; s < 3; ++s) {
    double loss = interpolated.run(lr);
    double want_loss = 0;
    for (size_t i = 0; i < 2; ++i) {
      double interpolated = (1 - alpha) * theta[i] + alpha * prev[i];  // first the interpolation,
      prev[i] = interpolated;                                            // then prev <- theta,
      want_loss += (interpolated - kX[i]) * (interpolated - kX[i]);     // the loss at the interpolated point,
      theta[i] = interpolated - lr * 2 * (interpolated - kX[i]);        // then the GD step from there.
    }
    CHECK(loss == doctest::Approx(want_loss).epsilon(1e-12));
    check_close(interpolated.w(), theta);
    check_close(interpolated.state.at("w/prev").data, prev);
  }
}

TEST_CASE("optimizer: at alpha = 1 the interpolated params stay the initial params and the loss is flat") {
  Graph model = tiny_model();
  Stepper frozen(model, {load_update_rule(KILN_SOURCE_DIR "/graphs/optimizers/interpolated_gd.json"), {{"alpha", 1.0}}});
  const std::vector<double> initial = frozen.w();
  double first_loss = 0;
  for (size_t i = 0; i < 2; ++i) first_loss += (initial[i] - kX[i]) * (initial[i] - kX[i]);
  for (int s = 0; s < 3; ++s) {
    double loss = frozen.run(0.1);
    CHECK(frozen.state.at("w/prev").data == initial);  // prev <- interpolated theta, exactly the initial params
    CHECK(loss == first_loss);
    // The stored params are one GD step from the initial params, every time.
    for (size_t i = 0; i < 2; ++i) CHECK(frozen.w()[i] == doctest::Approx(initial[i] - 0.1 * 2 * (initial[i] - kX[i])));
  }
}

TEST_CASE("optimizer: a broken update rule is reported at its JSON paths") {
  const char* text = R"({"format": "kiln.update/1", "name": "broken",
    "hyperparameters": {"lr": 0.1, "beta": "high"},
    "state": {"m": {"init": "ones"}},
    "update": {"nodes": [{"name": "s", "op": "mull", "inputs": ["grad", "nope"]}],
               "outputs": {"velocity": "s"}}})";
  try {
    parse_update_rule(text, "broken.json");
    FAIL("expected a GraphError");
  } catch (const GraphError& e) {
    std::string msg = e.what();
    CHECK(msg.find("/hyperparameters/lr") != std::string::npos);     // reserved name
    CHECK(msg.find("/hyperparameters/beta") != std::string::npos);   // not a number
    CHECK(msg.find("/state/m/init") != std::string::npos);
    CHECK(msg.find("did you mean 'mul'") != std::string::npos);
    CHECK(msg.find("/update/nodes/0/inputs/1") != std::string::npos);  // 'nope' undefined
    CHECK(msg.find("/update/outputs/velocity") != std::string::npos);
    CHECK(msg.find("must give \"param\"") != std::string::npos);
    CHECK(e.diagnostics.size() == 7);
  }
  // A type error is caught when the rule is built once at load time.
  const char* mistyped = R"({"format": "kiln.update/1", "name": "mistyped",
    "update": {"nodes": [{"name": "s", "op": "matmul", "inputs": ["grad", "param"]}], "outputs": {"param": "s"}}})";
  CHECK_THROWS_WITH_AS(parse_update_rule(mistyped, "m.json"), doctest::Contains("/update/nodes/0"), GraphError);
}

// Found by tools/fuzz.sh (target update_rule, at 474,639 executions): a node
// whose "name" is not a string escaped parse_update_rule as nlohmann's
// type_error (json::value with a string default); a state's non-string
// "init" did the same.
TEST_CASE("optimizer: a node name or state init that is not a string is reported at its JSON path") {
  const char* found = R"({"form2147483648at": "1", "name": "misd",
"update": {"nodes": [{"name": ["g"]}], "outputs": {"           paraJ": "s"}}})";
  try {
    parse_update_rule(found, "found.json");
    FAIL("expected a GraphError");
  } catch (const GraphError& e) {
    INFO(e.what());
    bool at_name = false;
    for (auto& d : e.diagnostics) at_name = at_name || (d.path == "/update/nodes/0/name" && d.message.find("a string") != std::string::npos);
    CHECK(at_name);
  }
  const char* init = R"({"format": "kiln.update/1", "name": "r", "state": {"m": {"init": 5}},
    "update": {"nodes": [{"name": "n", "op": "sub", "inputs": ["param", {"name": 7, "op": "mul", "inputs": ["lr", "grad"]}]}],
               "outputs": {"param": "n"}}})";
  try {
    parse_update_rule(init, "init.json");
    FAIL("expected a GraphError");
  } catch (const GraphError& e) {
    INFO(e.what());
    std::string msg = e.what();
    CHECK(msg.find("/state/m/init") != std::string::npos);
    CHECK(msg.find("/update/nodes/0/inputs/1/name") != std::string::npos);  // a nested node's name too
    CHECK(e.diagnostics.size() == 2);
  }
}

TEST_CASE("optimizer: learning-rate schedules") {
  LrSchedule exp{"exponential", 0.5, 10, false};
  CHECK(learning_rate_at(exp, 0.1, 0, 2000) == 0.1);
  CHECK(learning_rate_at(exp, 0.1, 5, 2000) == doctest::Approx(0.1 * std::sqrt(0.5)));
  CHECK(learning_rate_at(exp, 0.1, 20, 2000) == doctest::Approx(0.025));
  LrSchedule step{"step", 0.5, 10, false};
  CHECK(learning_rate_at(step, 0.1, 19, 2000) == doctest::Approx(0.05));
  LrSchedule inv{"inverse_time", 1.0, 4, false};
  CHECK(learning_rate_at(inv, 0.1, 4, 2000) == doctest::Approx(0.05));
  CHECK(learning_rate_at(LrSchedule{}, 0.1, 1000, 2000) == 0.1);
}
