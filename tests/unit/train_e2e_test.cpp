// End to end on real data subsets (label "e2e"; a couple of minutes): the
// seed's MLP and CNN train through compiled steps and learn. Needs the data
// prepared in data/ (`kiln data prepare --from ../shared/data`); without it
// the tests say so and check nothing.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "compiler/driver/training_setup.h"
#include "compiler/frontend/graph_json.h"
#include "runtime/train/trainer.h"

using namespace kiln;

namespace {

struct Run {
  driver::SpecData data;
  driver::CompiledModel model;
};

// batch_size: the CI-sized runs see 2,000 images, so they take smaller
// batches than the seed's to make as many steps as learning needs.
bool load(const std::string& spec_file, int64_t train_n, int64_t test_n, int64_t batch_size, TrainSpec& spec, Run& run) {
  spec = load_train_spec(std::string(KILN_SOURCE_DIR) + "/graphs/experiments/" + spec_file);
  spec.batch_size = batch_size;
  try {
    run.data = driver::load_spec_data(spec, train_n, test_n);
  } catch (const driver::MissingDataError& e) {
    MESSAGE("skipped: " << e.what());
    return false;
  }
  run.model = driver::compile_model(load_graph(spec.graph), &spec, spec.batch_size, 0);
  driver::initialize(run.model, spec);
  return true;
}

train::TrainerOptions options(const TrainSpec& spec, const driver::CompiledModel& m, int64_t epochs) {
  train::TrainerOptions o;
  o.batch_size = spec.batch_size;
  o.epochs = epochs;
  double lr = spec.optimizer.lr;
  o.step_scalars = [lr](int64_t) { return train::StepScalars{static_cast<float>(lr), {}}; };
  o.seed = spec.seed;
  o.features_input = m.features_input;
  o.labels_input = m.labels_input;
  o.progress = false;
  o.log = nullptr;
  return o;
}

}  // namespace

TEST_SUITE("e2e") {
// Batches of 4 at the seed's lr: 2,000 images give 1,500 steps in 3 epochs,
// about the step count of one full epoch at batch 64 (where the seed reaches
// 0.228). Measured: test accuracy 0.172 / 0.214 / 0.241 after epochs 1-3 (at
// batch 8: 0.193, at 16: 0.195 — too few steps; lr 3e-3 diverges at batch 8).
TEST_CASE("e2e: the seed's MLP on 2,000 CIFAR-10 images: loss falls by 30% in 3 epochs, test accuracy > 0.20") {
  TrainSpec spec;
  Run run;
  if (!load("e2_mlp_autodiff_b64.json", 2000, 1000, 4, spec, run)) return;
  REQUIRE(run.data.train.size() == 2000);
  auto& prog = *run.model.program;
  double initial = train::evaluate(prog, run.data.train, "x", "t").loss;
  train::Trainer t(prog, run.data.train, options(spec, run.model, 3));
  t.add_eval_set("test", run.data.test);
  auto r = t.run();
  REQUIRE(r.history.size() == 3);
  double final_loss = train::evaluate(prog, run.data.train, "x", "t").loss;
  MESSAGE("MLP train loss " << initial << " -> " << final_loss << ", test acc " << r.history.back().test_acc
                            << ", epoch time " << r.history.back().seconds << " s");
  CHECK(final_loss <= 0.7 * initial);
  CHECK(r.history.back().train_loss < r.history.front().train_loss);
  CHECK(r.history.back().test_acc > 0.20);
}

TEST_CASE("e2e: the seed's CNN on 2,000 MNIST images: test accuracy > 0.80 after one epoch") {
  TrainSpec spec;
  Run run;
  if (!load("e4a_cnn.json", 2000, 1000, 16, spec, run)) return;
  REQUIRE(run.data.train.size() == 2000);
  train::Trainer t(*run.model.program, run.data.train, options(spec, run.model, 1));
  t.add_eval_set("test", run.data.test);
  auto r = t.run();
  REQUIRE(r.history.size() == 1);
  MESSAGE("CNN train acc " << r.history[0].train_acc << ", test acc " << r.history[0].test_acc << ", epoch time "
                           << r.history[0].seconds << " s");
  CHECK(r.history[0].test_acc > 0.80);
}

// LeNet-5 (graphs/zoo/lenet5.json) on Debian's Fashion-MNIST, which has
// MNIST's IDX layout: the MNIST loader reads it from /usr/share/datasets.
TEST_CASE("e2e: LeNet-5 from the zoo on 2,000 Fashion-MNIST images: test accuracy > 0.60 after one epoch") {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(dir + "/train-images-idx3-ubyte.gz")) {
    MESSAGE("skipped: " << dir << " missing (tools/setup.sh installs dataset-fashion-mnist)");
    return;
  }
  const std::string file = (std::filesystem::temp_directory_path() / "kiln_lenet5_fashion.json").string();
  std::ofstream(file) << R"({"format": "kiln.train/1", "name": "lenet5_fashion", "graph": ")" << KILN_SOURCE_DIR
                      << R"(/graphs/zoo/lenet5.json", "data": {"set": "mnist", "dir": ")" << dir << R"("},
    "preprocessing": {"images": "scale255", "labels": "sparse"}, "batch_size": 16, "epochs": 1,
    "optimizer": {"kind": "adam", "lr": 0.002}, "seed": 1})";
  TrainSpec spec = load_train_spec(file);
  Run run;
  run.data = driver::load_spec_data(spec, 2000, 1000);
  run.model = driver::compile_model(load_graph(spec.graph), &spec, spec.batch_size, 0);
  driver::initialize(run.model, spec);
  train::Trainer t(*run.model.program, run.data.train, options(spec, run.model, 1));
  t.add_eval_set("test", run.data.test);
  auto r = t.run();
  REQUIRE(r.history.size() == 1);
  MESSAGE("LeNet-5 on Fashion-MNIST: train acc " << r.history[0].train_acc << ", test acc " << r.history[0].test_acc);
  CHECK(r.history[0].test_acc > 0.60);
}
}
