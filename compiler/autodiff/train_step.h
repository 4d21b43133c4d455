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
#include <vector>
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

// Prefix of the f32 scalar input that feeds a scheduled hyperparameter
// ("hyper:momentum" under a one-cycle schedule).
constexpr const char* kHyperparameterInputPrefix = "hyper:";

struct TrainStepConfig {
  UpdateRule optimizer = builtin_update_rule("gd");
  std::map<std::string, double> hyperparameters;  // overrides of the rule's defaults
  // Hyperparameters of the rule fed at every step (input "hyper:<name>")
  // instead of compiled in: a schedule drives them.
  std::vector<std::string> scheduled_hyperparameters;
  // Weight decay of every trainable param not matching a no_weight_decay
  // glob: coupled adds weight_decay * param to the gradient; decoupled
  // multiplies the param by (1 - lr * weight_decay) before the update.
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;
  std::vector<std::string> no_weight_decay;
  // > 0: every gradient times min(1, clip / (global norm + 1e-6)), the global
  // norm sqrt(sum of each param's norm squared) added in param order, before
  // decay and update. In a data-parallel step it is the apply half's (the
  // norm of the summed gradient).
  double clip_grad_norm = 0.0;
  // Use the graph's own gradients (Graph::gradients) where it declares them;
  // autodiff provides the others.
  bool use_handwritten_gradients = true;
};

// The optimizer a spec names (built in or loaded from its file), its
// hyperparameters, weight decay, clipping, and the hyperparameter its schedule
// drives. A spec with sweeps must be expanded first (expand_sweeps).
TrainStepConfig train_step_config(const TrainSpec& spec);
// The hyperparameter a one-cycle schedule cycles: "momentum", else "beta1"
// (PyTorch's choice); "" when the rule has neither.
std::string cycled_momentum_name(const UpdateRule& rule);

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
