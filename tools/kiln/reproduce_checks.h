#pragma once
// The seed experiments' acceptance criteria (docs/DESIGN.md, the trainer
// issue), evaluated on what `kiln reproduce` measured, so the report says
// plainly which of the seed's results kiln matches and which it does not.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tools/kiln/train_run.h"

namespace kiln::cli {

// One finished training run of an experiment.
struct ExperimentRun {
  std::string id;       // "E1", "E3", "E4a", ...
  std::string name;     // the spec's name, e.g. "e3_interp_alpha[alpha=0.25]", "e4a_cnn_seed2"
  uint64_t seed = 1;
  double alpha = NAN;   // E3's swept interpolation weight
  RunOutcome run;
};

struct CriterionResult {
  std::string experiment, criterion, measured;
  bool pass = false;
};

// Every criterion that the finished runs allow to evaluate (a criterion about
// epoch 10 needs a 10-epoch run; E4d needs E4c). e4b_identical: E4b's reloads
// predicted bit for bit (absent when E4b did not run).
std::vector<CriterionResult> evaluate_criteria(const std::vector<ExperimentRun>& runs, const bool* e4b_identical);

// A markdown table: experiment | criterion | kiln | verdict. A quick run's
// verdicts read "met" / "not met (subset)": its numbers come from data subsets.
std::string criteria_table(const std::vector<CriterionResult>& results, bool quick);

// Largest relative difference between two runs' printed numbers (E2 vs E1).
double max_relative_difference(const std::vector<report::EpochMetrics>& a, const std::vector<report::EpochMetrics>& b);

}  // namespace kiln::cli
