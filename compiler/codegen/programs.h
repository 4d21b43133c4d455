#pragma once
// The graphs a compiled program is made of: the model's predict and
// eval_step, and, for training, the training-step graph (forward, backward,
// optimizer update; after the simplify passes) as train_step.
#include <memory>
#include <optional>
#include <vector>

#include "compiler/autodiff/train_step.h"
#include "compiler/lower/lower_program.h"

namespace kiln::codegen {

struct ProgramGraphs {
  Graph model;               // in its inference form
  bool modes_differ = false; // training and inference compute the model differently (batch norm, dropout)
  std::optional<Graph> train_step;
  // Data-parallel training: the step's two halves (build_gradient_step,
  // build_apply_step), entries grad_step and apply_step in place of train_step.
  std::optional<Graph> grad_step, apply_step;
  // Entry specs pointing into this object (which therefore never moves):
  // predict, eval_step (every model output) and train_step (loss and
  // correct; every Graph::updates pair written back in place), or grad_step
  // (loss, correct, grad:<param>...) and apply_step (no outputs).
  std::vector<lower::EntrySpec> entries() const;
};

// `train` null: forward entries only. Throws what build_train_step throws
// (std::invalid_argument for a model without a scalar "loss" output, ...).
// `distributed`: the step's halves instead of the whole step.
std::unique_ptr<const ProgramGraphs> program_graphs(Graph model, const TrainStepConfig* train, bool distributed = false);

}  // namespace kiln::codegen
