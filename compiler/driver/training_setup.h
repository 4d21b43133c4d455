#pragma once
// The glue between a training spec and the runtime trainer: the spec's data
// sets loaded and preprocessed, the model graph turned into a JIT-compiled
// Program (train_step, eval_step, predict, init) and that program's params
// and optimizer state filled (drawn initializers, init_from checkpoints, or a
// checkpoint to resume). Used by `kiln train|eval|predict|reproduce` and tests.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "compiler/codegen/jit.h"
#include "compiler/codegen/programs.h"
#include "compiler/frontend/train_spec.h"
#include "runtime/data/batcher.h"
#include "runtime/data/dataset.h"
#include "runtime/program.h"
#include "runtime/thread_pool.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/trainer.h"

namespace kiln::driver {

// A data folder is missing or incomplete: the message says which command prepares it.
struct MissingDataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct SpecData {
  data::Dataset train, validation, test;  // validation empty without a split; test empty for text
  std::vector<std::string> class_names;   // the raw data set's classes
  std::shared_ptr<const std::vector<uint8_t>> text;  // text: the corpus
  std::span<const uint8_t> text_train;               // text: its training part
};

// Subsets: `train_subset` / `test_subset` override the spec's when > 0; the
// validation split (from the whole training set) comes first, then a seeded
// random k rows of each part are kept, in file order (the test subset also
// caps validation).
SpecData load_spec_data(const TrainSpec& spec, int64_t train_subset = 0, int64_t test_subset = 0);
// What the loader does to every training batch (augmentation; text: random
// window starts), or an empty function. `data` must outlive its use.
std::function<void(data::Batch&, std::span<const int64_t>, int64_t)> training_batch_transform(const TrainSpec& spec,
                                                                                             const SpecData& data);
// One split ("train" or "test") of the spec's data set, preprocessed as the spec says.
data::Dataset load_split(const TrainSpec& spec, const std::string& split, std::vector<std::string>* class_names = nullptr);
// Raw u8 images [N, ...] -> the model's input (standardize: f32 [N, D]; scale255: f32, shape kept).
Tensor preprocess_images(const TrainSpec& spec, const Tensor& images);
// i32 class ids [N] -> the labels the spec's loss wants (onehot f32 [N, classes], sparse i32 [N], binary f32 [N, 1]).
Tensor prepare_labels(const TrainSpec& spec, const Tensor& labels, int64_t classes);

// A compiled model with its memory. `graphs` and `compiled` keep the code
// alive for `program`; `pool` serves its parallel loops.
struct CompiledModel {
  std::unique_ptr<const codegen::ProgramGraphs> graphs;
  std::unique_ptr<codegen::CompiledProgram> compiled;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<Program> program;
  std::string features_input, labels_input;  // the model's data inputs
  double compile_ms = 0;
};

// The graphs compile_model lowers (the spec's freeze patterns applied), without compiling them.
std::unique_ptr<const codegen::ProgramGraphs> model_graphs(Graph model, const TrainSpec* spec, bool distributed = false);

// `spec` null: forward entries only (predict, eval_step). Applies the spec's
// freeze/unfreeze patterns. threads 0: every core.
// `copts`: codegen options (e.g. a compile cache folder).
// `distributed`: the train step as its two data-parallel halves (grad_step,
// apply_step; runtime/dist/data_parallel.h) instead of train_step.
CompiledModel compile_model(Graph model, const TrainSpec* spec, int64_t max_batch, int threads,
                            const codegen::CodegenOptions& copts = {}, bool distributed = false);

// kiln_aot_program::init_json (runtime/aot_program.h) for a program lowered
// from `graphs`: how each input of its init entry gets its first value, so an
// AOT program initializes exactly as initialize() does with seed `seed`
// (nullopt: the graph's own initializer seeds).
std::string aot_init_json(const codegen::ProgramGraphs& graphs, const lower::Program& program,
                          std::optional<uint64_t> seed);

// Fills params (drawn with the spec's seed, then overwritten by name from the
// spec's init_from checkpoint) and optimizer state (zeros, or copies of the
// params) through the program's init entry.
void initialize(CompiledModel& m, const TrainSpec& spec);
// Params only (for predict/eval from a checkpoint): every param of the
// checkpoint that the program has.
void load_params(CompiledModel& m, const train::Checkpoint& ckpt);

// The spec as a self-contained JSON object (every path absolute, sweeps
// resolved) for checkpoints; parse_train_spec(text, anything) reads it back.
std::string spec_json_for_checkpoint(const TrainSpec& spec);
// Optimizer steps in one epoch over `train_size` samples (the last partial batch kept).
int64_t batches_per_epoch(const TrainSpec& spec, int64_t train_size);
// What the trainer feeds each step (0-based) of a run of `run_steps` steps:
// the scheduled learning rate and every scheduled hyperparameter input
// ("hyper:momentum" or "hyper:beta1" under one-cycle). The update rule is
// read here, once, for the name of the hyperparameter one-cycle drives.
std::function<train::StepScalars(int64_t step)> step_schedule(const TrainSpec& spec, int64_t run_steps);
// The max batch a spec's training needs: its batch size, or the training set's size for "full".
int64_t training_max_batch(const TrainSpec& spec, int64_t train_size);

}  // namespace kiln::driver
