// E4b: a trained model saved (graph JSON + weights in a checkpoint), loaded
// into a freshly compiled program, predicts exactly what it predicted before.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "compiler/driver/training_setup.h"
#include "compiler/frontend/graph_json.h"
#include "runtime/train/predictions.h"
#include "runtime/train/trainer.h"

using namespace kiln;
namespace fs = std::filesystem;

static const std::string kCnnGraph = std::string(KILN_SOURCE_DIR) + "/graphs/cnn_mnist.json";

// The seed's CNN compiled for training with Adam, batches of 4, one thread.
static TrainSpec adam_spec(const std::string& name) {
  TrainSpec spec;
  spec.name = name;
  spec.optimizer.kind = "adam";
  spec.optimizer.lr = 0.001;
  spec.batch_size = 4;
  return spec;
}

TEST_CASE("train: E4b reload from a checkpoint gives bit-identical predictions") {
  const std::string& graph_path = kCnnGraph;
  TrainSpec spec = adam_spec("e4b_test");
  auto m = driver::compile_model(load_graph(graph_path), &spec, 4, 1);
  driver::initialize(m, spec);

  // Eight fixed pseudo-random images, labels 0..7; one epoch of two Adam steps.
  Tensor x(ElemType::f32, {8, 28, 28, 1}), y(ElemType::i32, {8});
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>((i * 7919) % 256) / 255.0f;
  for (int i = 0; i < 8; ++i) y.data<int32_t>()[i] = i;
  data::Dataset d = data::Dataset::make(x, y);
  train::TrainerOptions o;
  o.batch_size = 4;
  o.step_scalars = [](int64_t) { return train::StepScalars{0.001f, {}}; };
  o.features_input = m.features_input;
  o.labels_input = m.labels_input;
  o.progress = false;
  o.log = nullptr;
  std::ostringstream text;
  text << std::ifstream(graph_path).rdbuf();
  o.graph_json = text.str();
  train::Trainer t(*m.program, d, o);
  auto before = train::read_persistent(*m.program, false);
  CHECK(t.run().steps == 2);
  Tensor probs = train::predict_all(*m.program, x);
  REQUIRE(probs.shape() == std::vector<int64_t>{8, 10});

  fs::path file = fs::temp_directory_path() / ("kiln_e4b_" + std::to_string(::getpid()) + ".ckpt");
  train::save_checkpoint(file.string(), t.checkpoint());
  train::Checkpoint loaded = train::load_checkpoint(file.string());
  fs::remove(file);
  // The reloaded side knows nothing but the checkpoint: its graph text and params.
  auto fresh = driver::compile_model(parse_graph(loaded.graph_json), nullptr, 4, 1);
  driver::load_params(fresh, loaded);
  Tensor again = train::predict_all(*fresh.program, x);
  CHECK(again.bit_equal(probs));
  // Training moved the weights (so the check is about trained weights), and
  // each row of probabilities sums to 1.
  CHECK_FALSE(before[0].value.bit_equal(loaded.params[0].value));
  double sum = 0;
  for (int j = 0; j < 10; ++j) sum += again.data<float>()[j];
  CHECK(sum == doctest::Approx(1.0).epsilon(1e-5));
}

// A spec's init_from sets every param it names, those the graph initializes
// to a constant (biases: zeros) too: init fills those itself, and the
// checkpoint's value must win (it once did not, so transfer learning started
// from zero biases).
TEST_CASE("train: init_from sets zero-initialized params (biases) from the checkpoint too") {
  TrainSpec spec = adam_spec("init_from_test");
  auto m = driver::compile_model(load_graph(kCnnGraph), &spec, 4, 1);
  driver::initialize(m, spec);
  auto drawn = train::read_persistent(*m.program, false);
  train::Checkpoint ckpt;
  std::string bias_name;
  for (auto& p : drawn) {
    train::NamedTensor t = p;
    float* d = t.value.data<float>();
    for (int64_t i = 0; i < t.value.numel(); ++i) d[i] = 0.25f + static_cast<float>(i % 7);
    if (bias_name.empty() && p.name.find("bias") != std::string::npos) bias_name = p.name;
    ckpt.params.push_back(std::move(t));
  }
  REQUIRE(!bias_name.empty());
  fs::path file = fs::temp_directory_path() / ("kiln_init_from_" + std::to_string(::getpid()) + ".ckpt");
  train::save_checkpoint(file.string(), ckpt);
  spec.init_from = file.string();
  driver::initialize(m, spec);
  fs::remove(file);
  auto now = train::read_persistent(*m.program, false);
  for (size_t i = 0; i < now.size(); ++i) {
    INFO("param " << now[i].name);
    CHECK(now[i].value.bit_equal(ckpt.params[i].value));
  }
}
