#include "compiler/codegen/programs.h"

#include "compiler/passes/modes.h"
#include "compiler/passes/pass_manager.h"

namespace kiln::codegen {

std::vector<lower::EntrySpec> ProgramGraphs::entries() const {
  std::vector<lower::EntrySpec> out = lower::forward_entries(model);
  if (!train_step) return out;
  // predict and eval_step come from the training graph when it carries every
  // model output (no pre stage): one set of forward kernels serves all three.
  bool shares = !modes_differ;
  for (auto& [name, id] : model.outputs) shares = shares && train_step->output(name) != kNoNode;
  if (shares)
    for (lower::EntrySpec& e : out) e.graph = &*train_step;
  if (grad_step) {
    lower::EntrySpec g{"grad_step", &*grad_step, {}, grad_step->updates};
    for (auto& [name, id] : grad_step->outputs)
      if (name == "loss" || name == "correct" || name.rfind("grad:", 0) == 0) g.outputs.push_back(name);
    out.push_back(std::move(g));
    out.push_back({"apply_step", &*apply_step, {}, apply_step->updates});
    return out;
  }
  lower::EntrySpec t{"train_step", &*train_step, {}, train_step->updates};
  for (const char* name : {"loss", "correct"})
    if (train_step->output(name) != kNoNode) t.outputs.push_back(name);
  out.push_back(std::move(t));
  return out;
}

std::unique_ptr<const ProgramGraphs> program_graphs(Graph model, const TrainStepConfig* train, bool distributed) {
  auto pg = std::make_unique<ProgramGraphs>();
  pg->model = std::move(model);
  auto simplified = [](Graph g) {
    run_pipeline(g, "simplify");
    return g;
  };
  if (train) {
    // The whole step stays even when only its halves are compiled: it names
    // every optimizer state and how it starts (initialize() reads it).
    pg->train_step = simplified(build_train_step(pg->model, *train));
    if (distributed) {
      pg->grad_step = simplified(build_gradient_step(pg->model, *train));
      pg->apply_step = simplified(build_apply_step(pg->model, *train));
    }
  }
  // predict and eval_step run the inference form (running statistics, no dropout).
  // Then simplified as the training step is: batch norm folds into the
  // weights, a channels-first model's transposes compose away.
  pg->modes_differ = specialize_mode(pg->model, {Mode::infer});
  run_pipeline(pg->model, "simplify");
  return pg;
}

}  // namespace kiln::codegen
