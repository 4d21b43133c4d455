#include "compiler/frontend/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numbers>

namespace kiln {

const std::vector<std::string>& schedule_kinds() {
  static const std::vector<std::string> kinds = {"constant", "exponential", "step",     "inverse_time",
                                                 "multistep", "cosine",     "onecycle"};
  return kinds;
}

const std::vector<std::string>& schedule_keys(const std::string& kind) {
  static const std::map<std::string, std::vector<std::string>> keys = {
      {"constant", {}},
      {"exponential", {"decay_rate", "decay_steps", "staircase"}},
      {"step", {"decay_rate", "decay_steps"}},
      {"inverse_time", {"decay_rate", "decay_steps", "staircase"}},
      {"multistep", {"milestones", "gamma"}},
      {"cosine", {"total_steps", "min_lr"}},
      {"onecycle", {"total_steps", "pct_start", "div_factor", "final_div_factor", "three_phase", "anneal",
                    "cycle_momentum", "base_momentum", "max_momentum"}}};
  static const std::vector<std::string> none;
  auto it = keys.find(kind);
  return it == keys.end() ? none : it->second;
}

namespace {

// One-cycle's phases as PyTorch lays them out: each ends at a (fractional)
// step, going from one factor of the schedule's values to another.
struct Phase {
  double end_step;
  double lr_from, lr_to, momentum_from, momentum_to;
};

std::vector<Phase> onecycle_phases(const LrSchedule& s, double max_lr, int64_t total) {
  const double initial = max_lr / s.div_factor, minimum = initial / s.final_div_factor;
  const double rise_end = s.pct_start * static_cast<double>(total) - 1, last = static_cast<double>(total) - 1;
  const double lo = s.base_momentum, hi = s.max_momentum;
  if (s.three_phase)
    return {{rise_end, initial, max_lr, hi, lo},
            {2 * s.pct_start * static_cast<double>(total) - 2, max_lr, initial, lo, hi},
            {last, initial, minimum, hi, hi}};
  return {{rise_end, initial, max_lr, hi, lo}, {last, max_lr, minimum, lo, hi}};
}

double anneal(const std::string& how, double from, double to, double pct) {
  if (how == "linear") return (to - from) * pct + from;
  return to + (from - to) / 2.0 * (std::cos(std::numbers::pi * pct) + 1.0);
}

// The phase holding `step` and how far into it (PyTorch's _anneal_func argument).
std::pair<const Phase*, double> onecycle_at(const std::vector<Phase>& phases, int64_t step) {
  double start = 0, at = static_cast<double>(step);
  for (size_t i = 0; i < phases.size(); ++i) {
    const Phase& p = phases[i];
    if (at <= p.end_step || i + 1 == phases.size()) {
      double pct = p.end_step > start ? (at - start) / (p.end_step - start) : 1.0;
      return {&p, std::clamp(pct, 0.0, 1.0)};
    }
    start = p.end_step;
  }
  return {&phases.back(), 1.0};
}

// The schedule (without warm-up) at `step` of a span of `span` steps.
double scheduled(const LrSchedule& s, double lr, int64_t step, int64_t span) {
  const double x = static_cast<double>(step);
  if (s.kind == "exponential" || s.kind == "step" || s.kind == "inverse_time") {
    double ratio = x / static_cast<double>(s.decay_steps);
    if (s.staircase || s.kind == "step") ratio = std::floor(ratio);
    return s.kind == "inverse_time" ? lr / (1.0 + s.decay_rate * ratio) : lr * std::pow(s.decay_rate, ratio);
  }
  if (s.kind == "multistep") {
    auto passed = std::count_if(s.milestones.begin(), s.milestones.end(), [&](int64_t m) { return m <= step; });
    return lr * std::pow(s.gamma, static_cast<double>(passed));
  }
  const int64_t total = s.total_steps > 0 ? s.total_steps : std::max<int64_t>(span, 1);
  if (s.kind == "cosine")
    return s.min_lr + (lr - s.min_lr) * (1.0 + std::cos(std::numbers::pi * x / static_cast<double>(total))) / 2.0;
  if (s.kind == "onecycle") {
    auto phases = onecycle_phases(s, lr, total);
    auto [phase, pct] = onecycle_at(phases, step);
    return anneal(s.anneal, phase->lr_from, phase->lr_to, pct);
  }
  return lr;
}

}  // namespace

double learning_rate_at(const LrSchedule& s, double lr, int64_t step, int64_t run_steps) {
  const int64_t w = s.warmup_steps;
  if (w > 0 && step < w) {
    const double f = s.warmup_start_factor;
    return lr * (f + (1.0 - f) * static_cast<double>(step) / static_cast<double>(w));
  }
  return scheduled(s, lr, step - w, run_steps - w);
}

std::optional<double> momentum_at(const LrSchedule& s, int64_t step, int64_t run_steps) {
  if (s.kind != "onecycle" || !s.cycle_momentum) return std::nullopt;
  const int64_t w = s.warmup_steps;
  const int64_t total = s.total_steps > 0 ? s.total_steps : std::max<int64_t>(run_steps - w, 1);
  auto phases = onecycle_phases(s, 1.0, total);
  if (step < w) return phases.front().momentum_from;
  auto [phase, pct] = onecycle_at(phases, step - w);
  return anneal(s.anneal, phase->momentum_from, phase->momentum_to, pct);
}

}  // namespace kiln
