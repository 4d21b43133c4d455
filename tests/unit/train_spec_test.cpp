// kiln.train/1: the experiment specs load with the settings of DESIGN.md's
// table, sweeps expand, freeze patterns apply, and bad specs are reported at
// every faulty JSON path at once.
#include <doctest/doctest.h>

#include "compiler/autodiff/train_step.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/frontend/train_spec.h"

using namespace kiln;

namespace {

const std::string kExperiments = KILN_SOURCE_DIR "/graphs/experiments/";

bool has_path(const SpecError& e, const std::string& path) {
  for (auto& d : e.diagnostics)
    if (d.path == path) return true;
  return false;
}

}  // namespace

TEST_CASE("train spec: E1/E2 MLP specs (mini-batch 64 and full batch)") {
  TrainSpec e1 = load_train_spec(kExperiments + "e1_mlp_manual_b64.json");
  CHECK(e1.name == "e1_mlp_manual_b64");
  CHECK(e1.graph == KILN_SOURCE_DIR "/graphs/mlp_cifar10_manual.json");
  CHECK(e1.dataset == "cifar10");
  CHECK(e1.images == "standardize");
  CHECK(e1.labels == "onehot");
  CHECK(e1.batch_size == 64);
  CHECK_FALSE(e1.full_batch);
  CHECK(e1.epochs == 10);
  CHECK(e1.optimizer.kind == "gd");
  CHECK(e1.optimizer.lr == 1e-3);
  CHECK(e1.seed == 1);
  TrainSpec full = load_train_spec(kExperiments + "e1_mlp_manual_full.json");
  CHECK(full.full_batch);
  TrainSpec e2 = load_train_spec(kExperiments + "e2_mlp_autodiff_b64.json");
  CHECK(e2.graph == KILN_SOURCE_DIR "/graphs/mlp_cifar10.json");
  CHECK(load_train_spec(kExperiments + "e2_mlp_autodiff_full.json").full_batch);
}

TEST_CASE("train spec: E3 sweeps alpha over five runs of the interpolation rule") {
  TrainSpec e3 = load_train_spec(kExperiments + "e3_interp_alpha.json");
  CHECK(e3.optimizer.kind == KILN_SOURCE_DIR "/graphs/optimizers/interpolated_gd.json");
  auto runs = expand_sweeps(e3);
  REQUIRE(runs.size() == 5);
  std::vector<double> alphas;
  for (auto& r : runs) {
    alphas.push_back(r.optimizer.hyperparameters.at("alpha"));
    CHECK(r.optimizer.sweeps.empty());
  }
  CHECK(alphas == std::vector<double>{0, 0.25, 0.5, 0.75, 1});
  CHECK(runs[1].name == "e3_interp_alpha[alpha=0.25]");
  TrainStepConfig config = train_step_config(runs[4]);
  CHECK(config.optimizer.name == "interpolated_gd");
  CHECK(config.hyperparameters.at("alpha") == 1.0);
}

TEST_CASE("train spec: E4 CNN, transfer (65 of 55,809 params train) and fine-tuning") {
  TrainSpec a = load_train_spec(kExperiments + "e4a_cnn.json");
  CHECK(a.dataset == "mnist");
  CHECK(a.images == "scale255");
  CHECK(a.labels == "sparse");
  CHECK(a.batch_size == 32);
  CHECK(a.epochs == 2);
  CHECK(a.optimizer.kind == "adam");
  CHECK(a.validation_count == 7500);
  CHECK(a.validation_seed == 1);
  CHECK(a.metrics == std::vector<std::string>{"loss", "accuracy", "confusion_matrix", "epoch_time"});

  TrainSpec c = load_train_spec(kExperiments + "e4c_transfer.json");
  CHECK(c.labels == "binary");
  CHECK(c.positive_classes == std::vector<int>{5, 6, 7, 8, 9});
  CHECK(c.init_from == KILN_SOURCE_DIR "/runs/e4a_cnn/final.ckpt");
  Graph transfer = load_graph(c.graph);
  for (NodeId p : transfer.params()) transfer.node(p).attrs["trainable"] = true;  // the spec must decide
  apply_train_spec(transfer, c);
  CHECK(param_count(transfer) == 55809);
  CHECK(param_count(transfer, true) == 65);

  TrainSpec d = load_train_spec(kExperiments + "e4d_finetune.json");
  CHECK(d.optimizer.lr < c.optimizer.lr);
  apply_train_spec(transfer, d);
  CHECK(param_count(transfer, true) == 55809);
}

TEST_CASE("train spec: every problem is reported at its JSON path") {
  const char* text = R"({"format": "kiln.train/2", "graph": "no_such_graph.json",
    "data": {"set": "svhn"}, "preprocessing": {"images": "scale255", "labels": "binary"},
    "batch_size": 0, "epochs": -1, "optimizer": {"kind": "adam", "hyperparameters": {"beta3": 0.5}},
    "freeze": [3], "metricz": ["loss"]})";
  try {
    parse_train_spec(text, KILN_SOURCE_DIR "/graphs/experiments/bad.json");
    FAIL("expected a SpecError");
  } catch (const SpecError& e) {
    INFO(e.what());
    for (const char* path : {"/format", "/graph", "/data/set", "/data/dir", "/preprocessing/positive_classes",
                             "/batch_size", "/epochs", "/optimizer/hyperparameters/beta3", "/freeze/0", "/metricz"})
      CHECK_MESSAGE(has_path(e, path), path);
    CHECK(e.diagnostics.size() == 10);
    CHECK(std::string(e.what()).find("did you mean 'metrics'") != std::string::npos);
    CHECK(std::string(e.what()).find("has no hyperparameter 'beta3'") != std::string::npos);
  }
}

// A graph path the OS refuses to look up (ENAMETOOLONG) escaped
// parse_train_spec as std::filesystem::filesystem_error; the fuzz target
// train_spec catches only SpecError, so this was within its reach.
TEST_CASE("train spec: a graph path too long to look up is reported at /graph") {
  const std::string text = R"({"format": "kiln.train/1", "graph": ")" + std::string(300, 'g') + R"(.json",
    "data": {"set": "mnist", "dir": "d"}, "preprocessing": {"images": "scale255", "labels": "sparse"},
    "batch_size": 8, "epochs": 1, "optimizer": {"kind": "gd"}})";
  try {
    parse_train_spec(text, KILN_SOURCE_DIR "/graphs/experiments/long.json");
    FAIL("expected a SpecError");
  } catch (const SpecError& e) {
    INFO(e.what());
    CHECK(has_path(e, "/graph"));
    CHECK(e.diagnostics.size() == 1);
    CHECK(std::string(e.what()).find("cannot be looked up") != std::string::npos);
  }
}

TEST_CASE("train spec: a freeze pattern that matches no param is an error") {
  TrainSpec s = load_train_spec(kExperiments + "e4c_transfer.json");
  s.freeze = {"conv9/*"};
  Graph g = load_graph(s.graph);
  CHECK_THROWS_WITH_AS(apply_train_spec(g, s), doctest::Contains("\"conv9/*\" matches no param"), SpecError);
}
