#pragma once
// Learning-rate (and one-cycle momentum) schedules: each a function of the
// 0-based optimizer step alone, so a resumed run continues them exactly, each
// defined by the formula of its PyTorch scheduler (stepped once per batch):
//   constant      lr
//   exponential   lr * rate^(step / decay_steps)          (floor of the ratio if staircase; Keras)
//   step          lr * rate^floor(step / decay_steps)
//   inverse_time  lr / (1 + rate * step / decay_steps)    (floor of the ratio if staircase; Keras)
//   multistep     lr * gamma^(number of milestones <= step)                 MultiStepLR
//   cosine        min_lr + (lr - min_lr) (1 + cos(pi step / total)) / 2     CosineAnnealingLR
//   onecycle      warm from lr/div_factor up to lr over pct_start of total,
//                 anneal to lr/(div_factor*final_div_factor); momentum the
//                 other way between max_momentum and base_momentum          OneCycleLR
// A linear warm-up composes with any of them as PyTorch's
// SequentialLR(LinearLR(start_factor, total_iters=W), <schedule>, [W]):
// step < W: lr * (f + (1 - f) step / W); after: the schedule at step - W,
// its run W steps shorter. `total` is total_steps, or the whole run when 0.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kiln {

struct LrSchedule {
  std::string kind = "constant";
  double decay_rate = 1.0;  // exponential, step, inverse_time
  int64_t decay_steps = 1;
  bool staircase = false;
  std::vector<int64_t> milestones;  // multistep: steps, increasing
  double gamma = 0.1;
  int64_t total_steps = 0;  // cosine, onecycle: 0 = the whole run (after warm-up)
  double min_lr = 0.0;      // cosine: PyTorch's eta_min
  double pct_start = 0.3, div_factor = 25.0, final_div_factor = 1e4;  // onecycle
  bool three_phase = false;
  std::string anneal = "cos";  // onecycle: "cos" | "linear"
  bool cycle_momentum = true;  // onecycle: drives the rule's momentum (or beta1)
  double base_momentum = 0.85, max_momentum = 0.95;
  int64_t warmup_steps = 0;
  double warmup_start_factor = 1.0 / 3.0;  // PyTorch LinearLR's default
};

// Schedule kinds, and the keys each one reads besides "kind" and the warm-up's.
const std::vector<std::string>& schedule_kinds();
const std::vector<std::string>& schedule_keys(const std::string& kind);

// The learning rate of 0-based step `step` of a run of `run_steps` steps.
double learning_rate_at(const LrSchedule& schedule, double base_lr, int64_t step, int64_t run_steps);
// One-cycle's momentum at `step` (cycle_momentum); nullopt for every other schedule.
std::optional<double> momentum_at(const LrSchedule& schedule, int64_t step, int64_t run_steps);

}  // namespace kiln
