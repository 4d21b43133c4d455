#pragma once
// The training loop over a compiled Program (entries train_step and
// eval_step; see compiler/autodiff/train_step.h for what they compute):
// seeded batches from data::Batcher, the learning rate of each step fed to
// the step's "lr" input, sample-weighted epoch metrics, evaluation on the
// validation and test sets, periodic checkpoints, a clean stop on request
// (Ctrl-C) with a checkpoint to resume from, and exact resume.
//
// No compiler here: whoever compiles the program also fills its params
// (Program "init" entry, or restore()).
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <span>
#include <utility>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/data/batcher.h"
#include "runtime/data/dataset.h"
#include "runtime/program.h"
#include "runtime/report/metrics.h"
#include "runtime/report/plot.h"
#include "runtime/train/checkpoint.h"

namespace kiln::train {

// Training stopped because a step produced a non-finite value.
struct NumericsError : std::runtime_error {
  NumericsError(const std::string& what, int64_t epoch, int64_t step)
      : std::runtime_error(what), epoch(epoch), step(step) {}
  int64_t epoch;  // 1-based
  int64_t step;   // 1-based, counted over the whole run
};

// What a step is fed besides its batch: the learning rate and the other
// inputs a schedule drives (one-cycle momentum: "hyper:momentum"), by name.
struct StepScalars {
  float lr = 0;
  std::vector<std::pair<std::string, float>> inputs;
  // Appends ("lr", &lr) and every input's (name, pointer); valid while this lives.
  void append_to(std::vector<std::pair<std::string, const void*>>& named) const;
};

struct TrainerOptions {
  int64_t batch_size = 32;  // data::BatcherOptions::kFull (0): the whole training set in one step
  int64_t epochs = 1;
  // What 0-based optimizer step `step` is fed (the spec's schedules): a
  // function of the step alone, so a resumed run continues it exactly.
  std::function<StepScalars(int64_t step)> step_scalars = [](int64_t) { return StepScalars{0.01f, {}}; };
  // The run ends after this many steps in total (0: after `epochs`); the
  // epoch it ends in is evaluated and checkpointed as the last.
  int64_t max_steps = 0;
  // Applied to every training batch by the loader (augmentation, text windows).
  std::function<void(data::Batch&, std::span<const int64_t>, int64_t)> batch_transform;
  uint64_t seed = 1;        // batch order
  std::string features_input = "x";  // names of the train/eval step inputs fed from the data set
  std::string labels_input = "labels";

  std::string out_dir;      // checkpoints and metrics files go here; "" = none written
  int64_t checkpoint_every = 1;  // epochs between periodic checkpoints (0: only the final one)
  std::string graph_json, spec_json;  // stored in every checkpoint

  // After each finished step the trainer looks at this flag (a SIGINT handler
  // sets it): when set, it saves <out_dir>/interrupted.ckpt and returns.
  const std::atomic<bool>* stop = nullptr;
  bool check_numerics = false;  // also check every param and state for NaN/Inf after each step
  bool progress = true;         // a progress bar on stderr
  FILE* log = stdout;           // per-epoch lines (seed format); null: silent
  std::function<void(int64_t step)> after_step;  // called after each step (1-based count); tests
  bool print_digest = false;    // print the SHA-256 of every param and state after each epoch
};

// SHA-256 (hex) of every param and state of the program, in program order.
std::string persistent_digest(Program& program);

struct EvalResult {
  double loss = 0, accuracy = 0;
  int64_t samples = 0;
};

// Sample-weighted loss and accuracy of `data` under eval_step, in batches of
// the program's maximum batch size. `correct` comes from the step's "correct"
// output (accuracy NaN when the program has none).
EvalResult evaluate(Program& program, const data::Dataset& data, const std::string& features_input,
                    const std::string& labels_input);

// What evaluate() adds up, over rows [begin, end) of `data` (a data-parallel
// rank's shard): the loss times the samples, and the correct count (NaN when
// the program has no "correct" output).
struct EvalSums {
  double loss_sum = 0, correct = 0;
  int64_t samples = 0;
};
EvalSums evaluate_rows(Program& program, const data::Dataset& data, const std::string& features_input,
                       const std::string& labels_input, int64_t begin, int64_t end);
EvalResult eval_result(const EvalSums& sums);

// What one optimizer step reports: the loss over the whole (global) batch,
// the correct count (NaN: the model has none), and whether the run stops
// after it (the stop flag seen on any rank).
struct StepResult {
  double loss = 0, correct = NAN;
  bool stop = false;
};

// How the trainer takes a step and evaluates: on this process alone
// (train_step), or data-parallel over ranks (runtime/dist/data_parallel.h).
class StepRunner {
 public:
  virtual ~StepRunner() = default;
  // One optimizer step on `batch` (the global batch) at the learning rate
  // and hyperparameters of `scalars`; `stop` is this process's stop request.
  virtual StepResult step(const data::Batch& batch, const StepScalars& scalars, bool stop) = 0;
  virtual EvalResult evaluate(const data::Dataset& data) = 0;
  // Only one process of a job writes checkpoints, metrics and plots.
  virtual bool writes_files() const { return true; }
  // Whether a stop request takes effect only through step() (ranks agree on
  // the step they stop after); else the trainer also stops right after the
  // step during which it was made.
  virtual bool stop_needs_agreement() const { return false; }
  // After every epoch; `digest` gives the SHA-256 of this process's params
  // and state (computed when first called): a data-parallel runner refuses
  // to go on when the ranks' differ.
  virtual void check_epoch(const std::function<const std::string&()>& /*digest*/, int64_t /*epoch*/) {}
};

// The train_step entry of one program, fed by input name: the data set's
// features and labels, "lr", and "first_sample" (0) for models with dropout.
class LocalStepRunner final : public StepRunner {
 public:
  LocalStepRunner(Program& program, const data::Dataset& train, std::string features_input, std::string labels_input);
  StepResult step(const data::Batch& batch, const StepScalars& scalars, bool stop) override;
  EvalResult evaluate(const data::Dataset& data) override;

 private:
  Program& program_;
  std::string features_, labels_;
  std::vector<std::vector<uint8_t>> out_storage_;
  std::vector<void*> out_;
  std::vector<const void*> in_;
  int loss_i_ = -1, correct_i_ = -1;
};

// Input pointers of an entry by name into `in` (reused: no allocation after
// the first); throws naming the input when `named` lacks one.
void feed_inputs(const EntryInfo& e, const std::vector<std::pair<std::string, const void*>>& named,
                 std::vector<const void*>& in);
// Throws naming the entry and input unless `t` (a data set's features or
// labels, `what`) has the input's dtype and its shape after the batch dimension.
void check_fits(const EntryInfo& e, const TensorInfo& in, const Tensor& t, const char* what);
// A scalar output's value as a double.
double read_scalar(const void* at, ElemType type);

// Every param and state of the program as named tensors (checkpoint order: program order).
std::vector<NamedTensor> read_persistent(const Program& program, bool state);
// Copies tensors into the program's storage by name; throws std::runtime_error
// naming the tensor when a name is unknown (unless allow_unknown), or its
// dtype or shape differs.
void write_persistent(Program& program, const std::vector<NamedTensor>& tensors, bool allow_unknown = false);

struct TrainResult {
  bool interrupted = false;
  std::vector<report::EpochMetrics> history;
  std::vector<report::StepPoint> step_log;  // every step's loss and lr (steps.csv)
  int64_t steps = 0;          // optimizer steps taken in total (including before a resume)
  std::string checkpoint;     // the last checkpoint written ("" when none)
};

class Trainer {
 public:
  // `program`, `train` and the eval sets must outlive the trainer. Checks that
  // the program has train_step and eval_step and that the data fit their inputs.
  // `runner`: how steps are taken (null: a LocalStepRunner); must outlive the trainer.
  Trainer(Program& program, const data::Dataset& train, TrainerOptions options, StepRunner* runner = nullptr);

  // Evaluated after every epoch; `name` is "val" or "test".
  void add_eval_set(const std::string& name, const data::Dataset& data);

  // Continue a run from a checkpoint this trainer's program wrote: params,
  // optimizer state, step counter, batch position and the metrics so far.
  void resume(const Checkpoint& checkpoint);

  // Trains until options.epochs are done (or the stop flag is seen). Throws
  // NumericsError when a loss (or, with check_numerics, a param) is not finite.
  TrainResult run();

  // The current state as a checkpoint (what run() saves).
  Checkpoint checkpoint() const;

 private:
  struct Partial {  // the unfinished epoch's accumulators, saved with interrupted runs
    double loss_sum = 0, correct = 0;
    double seconds = 0, step_seconds = 0;  // wall time of the epoch's training, and in the steps
    int64_t samples = 0;
  };
  void save(const std::string& file, TrainResult& result);
  void check_finite(int64_t epoch, int64_t step) const;
  void write_metrics() const;
  void read_step_log();

  Program& program_;
  std::unique_ptr<StepRunner> own_runner_;
  StepRunner* runner_;
  const data::Dataset& train_;
  TrainerOptions opt_;
  std::vector<std::pair<std::string, const data::Dataset*>> eval_sets_;
  std::vector<report::EpochMetrics> history_;
  Partial partial_;
  // Every step's loss and learning rate (steps.csv), from the run's first step.
  std::vector<report::StepPoint> step_log_;
  data::BatchPosition position_;
  bool resumed_ = false;
  int64_t steps_ = 0;
};

}  // namespace kiln::train
