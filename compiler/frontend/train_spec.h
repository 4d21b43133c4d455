#pragma once
// The training spec, kiln.train/1 (schema: graphs/schema/kiln.train.schema.json):
// which graph, which data and preprocessing, batch size, epochs, optimizer and
// learning-rate schedule, seed, which params train, where they start, the
// validation split, metrics, quick-run subsets, threads. Every problem in a
// spec is reported at once, each at its JSON path (like the graph frontend).
// Relative paths in a spec are relative to the spec file's directory.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compiler/frontend/diagnostics.h"
#include "compiler/ir/graph.h"

namespace kiln {

constexpr const char* kTrainFormat = "kiln.train/1";

struct SpecError : GraphError {
  using GraphError::GraphError;
};

// Applied by the trainer to the "lr" input before each step (0-based step):
//   constant      lr
//   exponential   lr * rate^(step / decay_steps)          (floor of the ratio if staircase)
//   step          lr * rate^floor(step / decay_steps)
//   inverse_time  lr / (1 + rate * step / decay_steps)    (floor of the ratio if staircase)
struct LrSchedule {
  std::string kind = "constant";
  double decay_rate = 1.0;
  int64_t decay_steps = 1;
  bool staircase = false;
};
double learning_rate_at(const LrSchedule& schedule, double base_lr, int64_t step);

struct OptimizerSpec {
  std::string kind;        // "gd", "momentum", "adam", or the resolved path of a kiln.update/1 file
  double lr = 0.0;
  std::map<std::string, double> hyperparameters;
  // Values listed as arrays (a sweep), e.g. {"alpha": [0, 0.25, ...]}; "lr" may be swept too.
  std::map<std::string, std::vector<double>> sweeps;
  LrSchedule schedule;
};

struct TrainSpec {
  std::string file, name, description;
  std::string graph;                       // resolved path
  std::string dataset;                     // "mnist" | "cifar10"
  std::string data_dir;                    // resolved path
  std::string images = "scale255";         // "standardize" | "scale255"
  std::string labels = "sparse";           // "onehot" | "sparse" | "binary"
  std::vector<int> positive_classes;       // binary labels: these classes are 1
  int64_t batch_size = 0;                  // 0 with full_batch
  bool full_batch = false;
  int64_t epochs = 1;
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

// Sets every param's trainable flag: a param matching an "unfreeze" pattern
// trains, else one matching a "freeze" pattern is frozen, else the graph's
// flag stands. Throws SpecError when a pattern matches no param (a typo
// would otherwise silently train the wrong params).
void apply_trainable_patterns(Graph& g, const TrainSpec& spec);

}  // namespace kiln
