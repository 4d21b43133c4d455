// The trainer over compiled steps: sample-weighted epoch metrics, exact
// resume after an interruption, NaN detection, the Ctrl-C flag path.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <thread>

#include "compiler/driver/training_setup.h"
#include "compiler/frontend/graph_json.h"
#include "runtime/train/trainer.h"

using namespace kiln;
namespace fs = std::filesystem;

namespace {

// y = x w + b with one weight; MSE against t; binary "correct" (y > 0 vs t > 0.5).
const char* kTinyGraph = R"({
  "format": "kiln.graph/1", "name": "tiny",
  "inputs": {"x": {"shape": [-1, 1]}, "t": {"shape": [-1, 1]}},
  "params": {"w": {"shape": [1, 1], "init": {"kind": "constant", "value": 2.0}},
             "b": {"shape": [1], "init": "zeros"}},
  "nodes": [
    {"name": "xw", "op": "matmul", "inputs": ["x", "w"]},
    {"name": "y", "op": "add", "inputs": ["xw", "b"]},
    {"name": "loss", "op": "mse", "inputs": ["y", "t"]},
    {"name": "correct", "op": "correct_count", "inputs": ["y", "t"], "labels": "binary"}
  ],
  "outputs": {"logits": "y", "loss": "loss", "correct": "correct"}
})";

// x = 1..5, t = 1 0 1 0 1.
data::Dataset tiny_data() {
  Tensor x(ElemType::f32, {5, 1}), t(ElemType::f32, {5, 1});
  float tv[5] = {1, 0, 1, 0, 1};
  for (int i = 0; i < 5; ++i) x.data<float>()[i] = static_cast<float>(i + 1), t.data<float>()[i] = tv[i];
  return data::Dataset::make(std::move(x), std::move(t));
}

TrainSpec tiny_spec(const std::string& optimizer, double lr) {
  TrainSpec s;
  s.name = "tiny";
  s.optimizer.kind = optimizer;
  s.optimizer.lr = lr;
  s.batch_size = 2;
  return s;
}

driver::CompiledModel compiled(const TrainSpec& spec) {
  auto m = driver::compile_model(parse_graph(kTinyGraph), &spec, 2, 1);
  driver::initialize(m, spec);
  return m;
}

train::TrainerOptions options(const driver::CompiledModel& m, double lr, int64_t epochs) {
  train::TrainerOptions o;
  o.batch_size = 2;
  o.epochs = epochs;
  o.step_scalars = [lr](int64_t) { return train::StepScalars{static_cast<float>(lr), {}}; };
  o.seed = 7;
  o.features_input = m.features_input;
  o.labels_input = m.labels_input;
  o.progress = false;
  o.log = nullptr;
  return o;
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("kiln_train_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST_CASE("train: epoch loss and accuracy are sample-weighted over batches of 2, 2 and 1") {
  TrainSpec spec = tiny_spec("gd", 0.0);
  auto m = compiled(spec);
  data::Dataset d = tiny_data();
  CHECK(m.features_input == "x");
  CHECK(m.labels_input == "t");
  // lr 0: w stays 2, b stays 0, so y = 2x and the per-sample losses are
  // (2-1)^2, 4^2, (6-1)^2, 8^2, (10-1)^2 = 1, 16, 25, 64, 81: mean 187/5 = 37.4,
  // whatever batches the shuffle makes (a mean of batch means would depend on them).
  // Every y > 0 predicts 1: right on the three t = 1 samples, accuracy 0.6.
  train::Trainer trainer(*m.program, d, options(m, 0.0, 2));
  trainer.add_eval_set("test", d);
  train::TrainResult r = trainer.run();
  REQUIRE(r.history.size() == 2);
  CHECK(r.steps == 6);  // 3 batches per epoch
  for (auto& e : r.history) {
    CHECK(e.train_loss == doctest::Approx(37.4).epsilon(1e-6));
    CHECK(e.train_acc == doctest::Approx(0.6));
    CHECK(e.test_loss == doctest::Approx(37.4).epsilon(1e-6));
    CHECK(e.test_acc == doctest::Approx(0.6));
    CHECK(std::isnan(e.val_loss));
  }
  // The step counter is optimizer state: 6 steps.
  CHECK(*static_cast<const int64_t*>(m.program->persistent("step")) == 6);
}

TEST_CASE("train: evaluate weighs the last partial batch by its samples") {
  TrainSpec spec = tiny_spec("gd", 0.0);
  auto m = compiled(spec);  // max batch 2: eval runs batches of 2, 2, 1
  train::EvalResult r = train::evaluate(*m.program, tiny_data(), "x", "t");
  CHECK(r.samples == 5);
  CHECK(r.loss == doctest::Approx(37.4).epsilon(1e-6));  // (1+16 + 25+64 + 81) / 5; batch means would give 38.8
  CHECK(r.accuracy == doctest::Approx(0.6));
}

TEST_CASE("train: a run interrupted by the stop flag resumes to bit-identical params") {
  TrainSpec spec = tiny_spec("adam", 0.05);
  data::Dataset d = tiny_data();
  // Uninterrupted: 3 epochs of 3 steps.
  auto full = compiled(spec);
  train::Trainer a(*full.program, d, options(full, 0.05, 3));
  train::TrainResult ra = a.run();
  REQUIRE(ra.history.size() == 3);
  auto want = train::read_persistent(*full.program, false);
  auto want_state = train::read_persistent(*full.program, true);

  // Interrupted after step 5 (epoch 2, second batch), as a SIGINT handler would: the flag.
  fs::path dir = temp_dir("resume");
  std::atomic<bool> stop{false};
  auto first = compiled(spec);
  auto o = options(first, 0.05, 3);
  o.out_dir = dir.string();
  o.stop = &stop;
  o.after_step = [&](int64_t step) { if (step == 5) stop = true; };
  train::Trainer b(*first.program, d, o);
  train::TrainResult rb = b.run();
  CHECK(rb.interrupted);
  CHECK(rb.steps == 5);
  CHECK(rb.history.size() == 1);
  REQUIRE(rb.checkpoint == (dir / "interrupted.ckpt").string());
  train::Checkpoint ck = train::load_checkpoint(rb.checkpoint);
  CHECK(ck.step == 5);
  CHECK(ck.data_position.epoch == 1);
  CHECK(ck.data_position.next_batch == 2);
  CHECK(train::find_tensor(ck.optimizer_state, "w/m") != nullptr);  // Adam's first moment

  // A fresh program (params drawn again, then overwritten by the checkpoint).
  auto second = compiled(spec);
  train::Trainer c(*second.program, d, options(second, 0.05, 3));
  c.resume(ck);
  train::TrainResult rc = c.run();
  CHECK_FALSE(rc.interrupted);
  CHECK(rc.steps == 9);
  auto got = train::read_persistent(*second.program, false);
  auto got_state = train::read_persistent(*second.program, true);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(got[i].name);
    CHECK(got[i].value.bit_equal(want[i].value));
  }
  for (size_t i = 0; i < got_state.size(); ++i) CHECK(got_state[i].value.bit_equal(want_state[i].value));
  // The epoch metrics continue too, including the epoch cut in two.
  REQUIRE(rc.history.size() == 3);
  for (size_t e = 0; e < 3; ++e) {
    CHECK(rc.history[e].train_loss == ra.history[e].train_loss);
    CHECK(rc.history[e].train_acc == ra.history[e].train_acc);
  }
  // The params moved (the comparison above is not vacuous): w started at 2.
  CHECK(got[0].value.data<float>()[0] != 2.0f);
  fs::remove_all(dir);
}

TEST_CASE("train: a non-finite loss stops training and names the epoch and step") {
  TrainSpec spec = tiny_spec("gd", 0.01);
  auto m = compiled(spec);
  // A NaN learning rate at step index 3 (the 4th step, epoch 2's first) makes
  // w NaN; the 5th step's loss is the first non-finite one.
  auto o = options(m, 0.01, 3);
  o.step_scalars = [](int64_t step) { return train::StepScalars{step == 3 ? NAN : 0.01f, {}}; };
  data::Dataset d = tiny_data();
  train::Trainer t(*m.program, d, o);
  try {
    t.run();
    FAIL("training went on past a NaN loss");
  } catch (const train::NumericsError& e) {
    CHECK(e.epoch == 2);
    CHECK(e.step == 5);
    std::string msg = e.what();
    CHECK(msg.find("epoch 2, step 5") != std::string::npos);
    CHECK(msg.find("nan") != std::string::npos);
  }
}

TEST_CASE("train: check_numerics names the first non-finite param after the step that made it") {
  TrainSpec spec = tiny_spec("gd", 0.01);
  auto m = compiled(spec);
  auto o = options(m, 0.01, 2);
  o.check_numerics = true;
  o.step_scalars = [](int64_t step) { return train::StepScalars{step == 3 ? INFINITY : 0.01f, {}}; };
  data::Dataset d = tiny_data();
  train::Trainer t(*m.program, d, o);
  CHECK_THROWS_WITH_AS(t.run(), doctest::Contains("after epoch 2, step 4"), train::NumericsError);
}

TEST_CASE("train: the trainer refuses data that does not fit the compiled step") {
  TrainSpec spec = tiny_spec("gd", 0.01);
  auto m = compiled(spec);
  Tensor x(ElemType::f32, {4, 3}), t(ElemType::f32, {4, 1});
  data::Dataset bad = data::Dataset::make(std::move(x), std::move(t));
  CHECK_THROWS_WITH_AS(train::Trainer(*m.program, bad, options(m, 0.01, 1)),
                       doctest::Contains("input 'x' is f32 [-1, 1], but the data set's features are f32 [-1, 3]"),
                       std::runtime_error);
  auto o = options(m, 0.01, 1);
  o.batch_size = 4;
  CHECK_THROWS_WITH_AS(train::Trainer(*m.program, tiny_data(), o), doctest::Contains("exceed the maximum batch size 2"),
                       std::runtime_error);
}

TEST_CASE("trainer: a step budget ends the run inside an epoch, which is evaluated and checkpointed as the last") {
  TrainSpec spec = tiny_spec("gd", 0.01);
  auto m = compiled(spec);
  data::Dataset d = tiny_data();
  auto o = options(m, 0.01, 3);  // 3 batches an epoch (2, 2, 1): 9 steps without the budget
  o.max_steps = 4;
  o.out_dir = temp_dir("budget").string();
  train::Trainer trainer(*m.program, d, o);
  trainer.add_eval_set("test", d);
  train::TrainResult r = trainer.run();
  CHECK(r.steps == 4);
  REQUIRE(r.history.size() == 2);  // epoch 1 whole, epoch 2 after one step
  CHECK(r.step_log.size() == 4);
  CHECK(std::isfinite(r.history.back().test_loss));
  CHECK(fs::exists(fs::path(o.out_dir) / "final.ckpt"));
}

TEST_CASE("trainer: scheduled inputs reach the step, and the loader's transform rewrites each batch") {
  TrainSpec spec = tiny_spec("sgd", 0.01);
  spec.optimizer.schedule.kind = "onecycle";
  auto m = compiled(spec);
  const EntryInfo* step = m.program->entry("train_step");
  REQUIRE(step);
  bool has_momentum = false;
  for (auto& in : step->inputs) has_momentum = has_momentum || in.name == "hyper:momentum";
  CHECK(has_momentum);
  data::Dataset d = tiny_data();
  auto o = options(m, 0.01, 1);
  std::vector<std::pair<int64_t, float>> seen;  // (row, x the step saw) via the transform
  int64_t transformed = 0;
  o.step_scalars = [](int64_t s) {
    return train::StepScalars{0.01f, {{"hyper:momentum", static_cast<float>(0.9 - 0.01 * s)}}};
  };
  o.batch_transform = [&](data::Batch& b, std::span<const int64_t> rows, int64_t epoch) {
    CHECK(epoch == 0);
    CHECK(static_cast<int64_t>(rows.size()) == b.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      CHECK(b.features().data<float>()[i] == static_cast<float>(rows[i] + 1));  // row r holds x = r + 1
      b.own_features().data<float>()[i] = 0.0f;  // x = 0: the loss no longer depends on w
    }
    transformed += b.size();
  };
  train::Trainer trainer(*m.program, d, o);
  std::vector<float> w_before(1);
  std::memcpy(w_before.data(), m.program->persistent("w"), 4);
  trainer.run();
  CHECK(transformed == 5);
  float w_after;
  std::memcpy(&w_after, m.program->persistent("w"), 4);
  CHECK(w_after == w_before[0]);  // every x was zeroed: no gradient reached w
}

TEST_CASE("trainer: the epoch time is the training's wall time (the loader's waits included) with the steps' time beside it") {
  TrainSpec spec = tiny_spec("sgd", 0.01);
  auto m = compiled(spec);
  data::Dataset d = tiny_data();
  auto o = options(m, 0.01, 1);
  // A slow loader: 40 ms per batch of 2 (3 batches) on the prefetch thread,
  // which the steps (microseconds each) wait for.
  o.batch_transform = [](data::Batch&, std::span<const int64_t>, int64_t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(40));
  };
  char* text = nullptr;
  size_t size = 0;
  FILE* log = open_memstream(&text, &size);
  o.log = log;
  train::Trainer trainer(*m.program, d, o);
  auto r = trainer.run();
  std::fclose(log);
  const std::string printed(text, size);
  std::free(text);
  REQUIRE(r.history.size() == 1);
  const auto& e = r.history[0];
  CHECK(e.step_seconds >= 0);
  CHECK(e.seconds - e.step_seconds >= 0.075);  // at least two of the three batches were waited for
  CHECK(printed.find(" , Step Time : ") != std::string::npos);
}

TEST_CASE("compile_model: the spec's dropout replaces every dropout rate of the graph, attention's too") {
  const char* graph = R"({
    "format": "kiln.graph/1", "name": "drop",
    "inputs": {"x": {"shape": [-1, 4, 8]}, "t": {"shape": [-1, 4, 8]}},
    "nodes": [
      {"name": "attn", "layer": "multi_head_attention", "inputs": ["x"], "heads": 2, "causal": true, "dropout": 0.1},
      {"name": "drop", "layer": "dropout", "rate": 0.3},
      {"name": "loss", "op": "mse", "inputs": ["drop", "t"]}
    ],
    "outputs": {"logits": "drop", "loss": "loss"}
  })";
  bool modes_differ = false;
  auto masks = [&](const TrainSpec& spec) {  // dropout masks the training step draws
    auto m = driver::compile_model(parse_graph(graph), &spec, 2, 1);
    REQUIRE(m.graphs->train_step);
    modes_differ = m.graphs->modes_differ;
    int n = 0;
    for (const Node& node : m.graphs->train_step->nodes) n += node.op == "random_uniform";
    return n;
  };
  TrainSpec spec = tiny_spec("sgd", 0.01);
  CHECK(masks(spec) == 2);  // the graph's rates: the attention weights' mask and the layer's
  CHECK(modes_differ);
  spec.dropout = 0;
  CHECK(masks(spec) == 0);
  CHECK_FALSE(modes_differ);  // no dropout op left: predict shares the step's forward pass
  spec.dropout = 0.2;
  CHECK(masks(spec) == 2);
  // In the spec: a rate in [0, 1).
  const std::string head = R"({"format": "kiln.train/1", "graph": ")" KILN_SOURCE_DIR R"(/graphs/zoo/lenet5.json", )";
  const std::string tail = R"("data": {"set": "mnist", "dir": "unused"}, "batch_size": 4, "epochs": 1,
                              "preprocessing": {"images": "scale255", "labels": "sparse"},
                              "optimizer": {"kind": "sgd", "lr": 0.01}})";
  CHECK(parse_train_spec(head + R"("dropout": 0, )" + tail, "case.json").dropout == 0);
  CHECK(std::isnan(parse_train_spec(head + tail, "case.json").dropout));
  try {
    parse_train_spec(head + R"("dropout": 1, )" + tail, "case.json");
    FAIL("dropout 1 accepted");
  } catch (const SpecError& e) {
    CHECK(std::string(e.what()).find("/dropout: dropout is a rate in [0, 0.999], got 1") != std::string::npos);
  }
}

TEST_CASE("compile_model: the features are the input the prediction reads, whatever the names' order") {
  // "targets" sorts before "tokens": a choice by order would feed the model its own targets.
  const char* graph = R"({
    "format": "kiln.graph/1", "name": "order",
    "inputs": {"tokens": {"shape": [-1, 1]}, "targets": {"shape": [-1, 1]}},
    "params": {"w": {"shape": [1, 1], "init": {"kind": "constant", "value": 2.0}}},
    "nodes": [
      {"name": "y", "op": "matmul", "inputs": ["tokens", "w"]},
      {"name": "loss", "op": "mse", "inputs": ["y", "targets"]}
    ],
    "outputs": {"logits": "y", "loss": "loss"}
  })";
  TrainSpec spec = tiny_spec("gd", 0.01);
  auto m = driver::compile_model(parse_graph(graph), &spec, 2, 1);
  CHECK(m.features_input == "tokens");
  CHECK(m.labels_input == "targets");
}
