#pragma once
// The programs a trainer runs, each one graph with nothing hidden:
//  - train step: inputs = the batch inputs + "lr" (f32 scalar, so a schedule
//    needs no recompiling); persistent = params + optimizer state + "step"
//    (i64 scalar, role state); outputs = "loss", "correct" (when the model
//    has it) and "<name>@next" for every param and state it updates, also
//    listed in Graph::updates (persistent node -> its new value).
//    Models with dropout also take "first_sample" (kFirstSampleInput).
//  - eval step: "loss" and "correct" at the current params, no updates.
//  - predict: "probabilities" (the model's, or softmax of its logits).
#include <map>
#include <string>

#include "compiler/autodiff/update_rule.h"
#include "compiler/frontend/train_spec.h"
#include "compiler/interp/interpreter.h"
#include "compiler/ir/graph.h"

namespace kiln {

constexpr const char* kLearningRateInput = "lr";
constexpr const char* kStepCounter = "step";
// i64 scalar input of a training step with randomness (dropout): the global
// index of the batch's first sample (0 in a single process; a rank's shard
// offset in data-parallel training).
constexpr const char* kFirstSampleInput = "first_sample";
// f32 scalar input of the gradient step: the loss is differentiated times
// this (a rank's share of the global batch, b_r / B), so what its gradients
// sum over ranks, synchronized batch norm's included, is the global batch's.
constexpr const char* kLossScaleInput = "loss_scale";

struct TrainStepConfig {
  UpdateRule optimizer = builtin_update_rule("gd");
  std::map<std::string, double> hyperparameters;  // overrides of the rule's defaults
  // Use the graph's own gradients (Graph::gradients) where it declares them;
  // autodiff provides the others.
  bool use_handwritten_gradients = true;
};

// The optimizer a spec names (built in or loaded from its file) and its
// hyperparameters. A spec with sweeps must be expanded first (expand_sweeps).
TrainStepConfig train_step_config(const TrainSpec& spec);

// Throws std::invalid_argument when the model has no scalar "loss" output or
// already uses the names "lr" / "step"; AutodiffError / OpError from the
// gradient and update construction.
Graph build_train_step(const Graph& model, const TrainStepConfig& config = {});
// The train step cut in two for data-parallel training, the gradients summed
// over ranks between the halves:
//  - gradient step: the forward and backward pass; outputs "loss", "correct"
//    (when the model has it) and "grad:<param>" (d loss / d param, the rule's
//    pre stage applied) for every trainable param; its only updates are the
//    forward pass's own (batch norm's running statistics); no "step" update.
//  - apply step: inputs "lr" and "grad:<param>"; the rule's pre and update
//    stages; updates every trainable param, its optimizer state and "step".
// Run back to back on one process they compute what build_train_step does.
Graph build_gradient_step(const Graph& model, const TrainStepConfig& config = {});
Graph build_apply_step(const Graph& model, const TrainStepConfig& config = {});
// "grad:<param>": the gradient step's output and the apply step's input.
std::string gradient_input_name(const std::string& param);
Graph build_eval_step(const Graph& model);
Graph build_predict(const Graph& model);

// The model with d loss / d param appended for every trainable param (what
// autodiff produced, before any pass), one output "grad:<param>" each.
Graph build_gradient_graph(const Graph& model, bool use_handwritten_gradients = true);

// The name of the output holding a persistent node's next value.
std::string next_value_name(const std::string& persistent);

// Initial values of the step counter and every optimizer state of a train
// step graph: init {"kind": "zeros"} or {"kind": "copy", "of": <param>},
// taken from `params` (the params' initial values, by name).
std::map<std::string, interp::Value> initial_optimizer_state(const Graph& step,
                                                             const std::map<std::string, interp::Value>& params);

}  // namespace kiln
