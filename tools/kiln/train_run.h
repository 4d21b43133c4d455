#pragma once
// One training run from a spec, as `kiln train` and `kiln reproduce` do it:
// data, compile, init (or resume), train with the per-epoch lines, then
// metrics files, curves, the confusion matrix and the final checkpoint in
// the run's folder.
#include <atomic>
#include <optional>
#include <string>

#include "compiler/frontend/train_spec.h"
#include "runtime/dist/data_parallel.h"
#include "runtime/report/metrics.h"
#include "tools/kiln/distributed.h"
#include "runtime/train/trainer.h"

namespace kiln::cli {

struct RunOptions {
  std::string out_dir;              // default: runs/<spec name>
  int64_t epochs = 0;               // 0: the spec's
  int64_t steps = 0;                // > 0: end after this many steps (overrides epochs and the spec's steps)
  int64_t train_subset = 0, test_subset = 0;  // 0: the spec's
  std::string resume;               // checkpoint to continue from
  int threads = 0;                  // 0: the spec's, else every core
  bool check_numerics = false;
  bool progress = true;
  std::string cache_dir;            // compile cache folder ("" = no cache)
  const std::atomic<bool>* stop = nullptr;
  // Data-parallel over the ranks of an MPI job (tools/kiln/distributed.h).
  bool distributed = false;
  double comm_timeout = kDefaultCommTimeout;  // seconds a collective waits for a peer
  int64_t bucket_bytes = 4 << 20;   // gradient bucket size
  bool overlap = true;              // send gradients during the backward pass
  // > 0: the data-parallel step of that many ranks simulated in this process
  // (one shard after the other, summed in rank order): the reference a
  // distributed run equals bit for bit.
  int simulate_ranks = 0;
  bool print_digest = false;        // the params' SHA-256 after every epoch
};

struct RunOutcome {
  train::TrainResult result;
  std::string out_dir;
  double compile_seconds = 0, total_seconds = 0;
  int64_t params = 0, trainable_params = 0;
  int64_t train_size = 0, validation_size = 0, test_size = 0;
  std::optional<report::ConfusionMatrix> confusion;  // on the test set, when the spec asks for it
  Tensor test_probabilities;                         // predict on the test set after training (with the confusion matrix)
  int64_t max_batch = 0;                              // what the program was compiled for
  // Data-parallel runs: this rank, the ranks, the gradient buckets and this rank's step times.
  int rank = 0, ranks = 1;
  std::string buckets;
  dist::StepTiming timing;
};

RunOutcome run_training(const TrainSpec& spec, const RunOptions& options);

// SIGINT sets this flag (the first time; a second Ctrl-C kills as usual).
const std::atomic<bool>* install_interrupt_flag();

}  // namespace kiln::cli
