#pragma once
// The training spec, kiln.train/1 (schema: graphs/schema/kiln.train.schema.json):
// which graph, which data and preprocessing, batch size, epochs, optimizer and
// learning-rate schedule, seed, which params train, where they start, the
// validation split, metrics, quick-run subsets, threads. Every problem in a
// spec is reported at once, each at its JSON path (like the graph frontend).
// Relative paths in a spec are relative to the spec file's directory.
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compiler/frontend/diagnostics.h"
#include "compiler/frontend/lr_schedule.h"
#include "compiler/ir/graph.h"

namespace kiln {

constexpr const char* kTrainFormat = "kiln.train/1";
// Where Debian's dataset-fashion-mnist puts the IDX files (a spec's default data dir).
constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

struct SpecError : GraphError {
  using GraphError::GraphError;
};

struct OptimizerSpec {
  std::string kind;        // "gd", "momentum", "adam", or the resolved path of a kiln.update/1 file
  double lr = 0.0;
  std::map<std::string, double> hyperparameters;
  // Values listed as arrays (a sweep), e.g. {"alpha": [0, 0.25, ...]}; "lr" may be swept too.
  std::map<std::string, std::vector<double>> sweeps;
  LrSchedule schedule;  // applied by the trainer to the "lr" input before each step
  // Weight decay: "coupled" adds weight_decay * param to the gradient (L2, as
  // PyTorch's SGD and Adam do); "decoupled" scales the param by
  // (1 - lr * weight_decay) before the rule's update (AdamW). Default mode:
  // decoupled for adamw, coupled otherwise. Params matching a no_weight_decay
  // glob are not decayed.
  double weight_decay = 0.0;
  std::string weight_decay_mode;  // "coupled" | "decoupled"; "" = the rule's default
  std::vector<std::string> no_weight_decay;
  // Gradients scaled by min(1, clip / (global norm + 1e-6)) before decay and
  // update (torch.nn.utils.clip_grad_norm_); 0 = no clipping.
  double clip_grad_norm = 0.0;
};

struct TrainSpec {
  std::string file, name, description;
  std::string graph;                       // resolved path
  std::string dataset;                     // "mnist" | "fashion_mnist" | "cifar10" | "text"
  std::string data_dir;                    // resolved path (images)
  std::string text_file;                   // text: resolved path of a .txt or .txt.gz file
  int64_t context = 0;                     // text: characters a window feeds the model
  double text_validation_fraction = 0.1;   // text: the last part by position is validation
  std::string images = "scale255";         // "standardize" | "scale255"
  std::string labels = "sparse";           // "onehot" | "sparse" | "binary"
  std::vector<int> positive_classes;       // binary labels: these classes are 1
  // Per-channel normalization after scaling (x - mean[c]) / std[c], c the last axis; empty = none.
  std::vector<double> normalize_mean, normalize_std;
  // Augmentation of training images, per sample, from the run's seed:
  // a random crop of the original size from the image zero-padded by
  // crop_padding (-1: none), a horizontal flip with probability 1/2.
  int64_t crop_padding = -1;
  bool horizontal_flip = false;
  int64_t batch_size = 0;                  // 0 with full_batch
  bool full_batch = false;
  int64_t epochs = 1;
  int64_t steps = 0;                       // > 0: the run ends after this many steps (epochs as needed)
  // Set: every dropout rate of the graph (dropout layers, attention dropout)
  // for this run, as a model's config overrides its default; NaN: the graph's.
  double dropout = NAN;
  OptimizerSpec optimizer;
  uint64_t seed = 1;
  std::vector<std::string> freeze, unfreeze;  // globs on param names
  std::string init_from;                   // resolved checkpoint path, or empty
  int64_t validation_count = 0;
  uint64_t validation_seed = 0;
  std::vector<std::string> metrics = {"loss", "accuracy"};
  int64_t train_subset = 0, test_subset = 0;  // 0 = the whole set
  int threads = 0;                         // 0 = every core
};

TrainSpec parse_train_spec(const std::string& text, const std::string& file);
TrainSpec load_train_spec(const std::string& path);

// One spec per combination of swept values (a spec without sweeps gives
// itself); each is named "<name>[alpha=0.25]" and has no sweeps left.
std::vector<TrainSpec> expand_sweeps(const TrainSpec& spec);

// What a spec changes in its graph. Every param's trainable flag: a param
// matching an "unfreeze" pattern trains, else one matching a "freeze"
// pattern is frozen, else the graph's flag stands; throws SpecError when a
// pattern matches no param (a typo would otherwise silently train the wrong
// params). The spec's "dropout": every dropout op's rate (at 0 the ops are
// removed, so training and inference share one forward pass).
void apply_train_spec(Graph& g, const TrainSpec& spec);

}  // namespace kiln
