// kiln's optimizers, weight decay, clipping and schedules against the table
// PyTorch produced (tests/fixtures/torch/optimizer_table.json, written by
// make_optimizer_table.py next to it): every case's spec is parsed as a user
// writes it, its train step built and run through the interpreter (f64), and
// the learning rate, momentum and params compared after every step.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "compiler/autodiff/train_step.h"
#include "compiler/driver/training_setup.h"
#include "compiler/frontend/train_spec.h"
#include "compiler/interp/interpreter.h"
#include "compiler/ir/builder.h"

using namespace kiln;
using interp::Value;
using nlohmann::json;

namespace {

json table() {
  std::ifstream in(KILN_SOURCE_DIR "/tests/fixtures/torch/optimizer_table.json");
  REQUIRE(in);
  return json::parse(in);
}

std::vector<double> flat(const json& rows) {
  std::vector<double> out;
  for (const json& r : rows)
    if (r.is_array()) for (double v : r) out.push_back(v);
    else out.push_back(r);
  return out;
}

// mean((x @ w + b - y)^2), the fixture's problem.
Graph least_squares() {
  Graph g;
  g.name = "least_squares";
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {-1, 3}});
  NodeId y = b.input("y", {DType::f32, {-1, 2}});
  NodeId w = b.param("w", {DType::f32, {3, 2}});
  NodeId bias = b.param("b", {DType::f32, {2}});
  NodeId residual = b.add2("sub", b.add2("add", b.add2("matmul", x, w), bias), y);
  g.outputs = {{"loss", b.add1("reduce_mean", b.add1("square", residual))}};
  return g;
}

// The case as a spec's optimizer section.
std::string spec_text(const json& c) {
  json opt = {{"kind", c["kind"]}, {"lr", c["lr"]}};
  for (const char* key : {"hyperparameters", "weight_decay", "weight_decay_mode", "clip_grad_norm", "schedule"})
    if (c.contains(key)) opt[key] = c[key];
  json spec = {{"format", "kiln.train/1"}, {"graph", KILN_SOURCE_DIR "/graphs/zoo/lenet5.json"},
               {"data", {{"set", "mnist"}, {"dir", "unused"}}},
               {"preprocessing", {{"images", "scale255"}, {"labels", "sparse"}}},
               {"batch_size", 4}, {"epochs", 1}, {"optimizer", opt}};
  return spec.dump();
}

}  // namespace

TEST_CASE("torch table: optimizers, weight decay, clipping and schedules step by step") {
  const json t = table();
  const int64_t steps = t["steps"];
  const Graph model = least_squares();
  REQUIRE(t["cases"].size() >= 5);
  for (const json& c : t["cases"]) {
    const std::string name = c["name"];
    CAPTURE(name);
    TrainSpec spec = parse_train_spec(spec_text(c), "case.json");
    TrainStepConfig config = train_step_config(spec);
    Graph step = build_train_step(model, config);
    std::map<std::string, Value> state = {{"w", Value{DType::f32, {3, 2}, flat(t["w0"])}},
                                          {"b", Value{DType::f32, {2}, flat(t["b0"])}}};
    for (auto& [k, v] : initial_optimizer_state(step, state)) state[k] = v;
    const auto schedule = driver::step_schedule(spec, steps);
    for (int64_t s = 0; s < steps; ++s) {
      const json& want = c["expected"][static_cast<size_t>(s)];
      CAPTURE(s);
      train::StepScalars scalars = schedule(s);
      CHECK(scalars.lr == doctest::Approx(want["lr"].get<double>()).epsilon(1e-6));
      auto feeds = state;
      feeds["x"] = Value{DType::f32, {4, 3}, flat(t["x"])};
      feeds["y"] = Value{DType::f32, {4, 2}, flat(t["y"])};
      feeds["lr"] = Value{DType::f32, {}, {want["lr"].get<double>()}};
      for (auto& [input, value] : scalars.inputs) {
        CHECK(value == doctest::Approx(want["momentum"].get<double>()).epsilon(1e-6));
        feeds[input] = Value{DType::f32, {}, {want["momentum"].get<double>()}};
      }
      if (scalars.inputs.empty() && c.value("schedule", json::object()).value("kind", "") == "onecycle")
        FAIL("a one-cycle schedule must feed the cycled momentum");
      auto out = interp::Interpreter(step, interp::Precision::f64).run(feeds);
      CHECK(out.at("loss").data[0] == doctest::Approx(want["loss"].get<double>()).epsilon(1e-9));
      for (auto& [target, value] : step.updates) state[step.node(target).name] = out.at(next_value_name(step.node(target).name));
      const std::vector<double> w = flat(want["w"]), b = flat(want["b"]);
      for (size_t i = 0; i < w.size(); ++i) CHECK(state.at("w").data[i] == doctest::Approx(w[i]).epsilon(1e-9));
      for (size_t i = 0; i < b.size(); ++i) CHECK(state.at("b").data[i] == doctest::Approx(b[i]).epsilon(1e-9));
    }
  }
}

TEST_CASE("torch table: excluded params are not decayed, and the decay mode follows the rule") {
  TrainSpec spec = parse_train_spec(
      R"({"format": "kiln.train/1", "graph": ")" KILN_SOURCE_DIR R"(/graphs/zoo/lenet5.json",
          "data": {"set": "mnist", "dir": "unused"}, "preprocessing": {"images": "scale255", "labels": "sparse"},
          "batch_size": 4, "epochs": 1,
          "optimizer": {"kind": "adamw", "lr": 0.1, "weight_decay": 0.5, "no_weight_decay": ["b"]}})",
      "case.json");
  TrainStepConfig config = train_step_config(spec);
  CHECK(config.decoupled_weight_decay);
  Graph step = build_train_step(least_squares(), config);
  std::map<std::string, Value> state = {{"w", Value{DType::f32, {3, 2}, std::vector<double>(6, 1.0)}},
                                        {"b", Value{DType::f32, {2}, {1.0, 1.0}}}};
  for (auto& [k, v] : initial_optimizer_state(step, state)) state[k] = v;
  // x = 0 and y = x @ w + b: a zero gradient, so only the decay moves a param.
  auto feeds = state;
  feeds["x"] = Value{DType::f32, {1, 3}, {0, 0, 0}};
  feeds["y"] = Value{DType::f32, {1, 2}, {1, 1}};
  feeds["lr"] = Value{DType::f32, {}, {0.1}};
  auto out = interp::Interpreter(step, interp::Precision::f64).run(feeds);
  CHECK(out.at("w@next").data[0] == doctest::Approx(1.0 - 0.1 * 0.5));  // decoupled: p (1 - lr wd)
  CHECK(out.at("b@next").data[0] == doctest::Approx(1.0));              // excluded
  spec.optimizer.kind = "sgd";
  CHECK_FALSE(train_step_config(spec).decoupled_weight_decay);
}

TEST_CASE("torch table: spec errors name the key") {
  auto problems = [](const std::string& optimizer) {
    try {
      parse_train_spec(R"({"format": "kiln.train/1", "graph": ")" KILN_SOURCE_DIR R"(/graphs/zoo/lenet5.json",
          "data": {"set": "mnist", "dir": "unused"}, "preprocessing": {"images": "scale255", "labels": "sparse"},
          "batch_size": 4, "epochs": 1, "optimizer": )" + optimizer + "}",
                       "case.json");
    } catch (const SpecError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(problems(R"({"kind": "sgd", "schedule": {"kind": "cosine", "milestones": [3]}})").find("/optimizer/schedule/milestones") != std::string::npos);
  CHECK(problems(R"({"kind": "gd", "schedule": {"kind": "onecycle", "cycle_momentum": true}})").find("cycle_momentum") != std::string::npos);
  CHECK(problems(R"({"kind": "sgd", "clip_grad_norm": -1})").find("/optimizer/clip_grad_norm") != std::string::npos);
  CHECK(problems(R"({"kind": "sgd", "schedule": {"kind": "multistep", "milestones": [5, 3]}})").find("milestones/1") != std::string::npos);
  CHECK(problems(R"({"kind": "sgd", "weight_decay_mode": "both"})").find("/optimizer/weight_decay_mode") != std::string::npos);
  CHECK(problems(R"({"kind": "sgd", "schedule": {"kind": "onecycle"}})").empty());
  // gd has no momentum: one-cycle without cycle_momentum is fine.
  CHECK(problems(R"({"kind": "gd", "schedule": {"kind": "onecycle"}})").empty());
}
