#pragma once
// Gradient checking in f64 through the reference interpreter: autodiff (and,
// where the graph declares them, its hand-written gradients) against central
// finite differences of the loss.
//
// Large params are sampled: a seeded set of coordinates plus one random unit
// direction per param (a directional derivative: one pair of evaluations), so
// a 3.1M-param MLP checks in seconds with a small batch.
//
// Kinks (relu's and every maximum's switch point, reduce_max and max-pool
// winners): the random batch is redrawn up to `max_redraws` (8) times, keeping the
// draw whose smallest |x - y| over every `maximum` node is largest (reported
// as the kink margin; the MLP reaches 1e-3 easily). Where a graph has too many
// kinks for that (a CNN has ~10^5 relu inputs), every finite difference also
// checks that no branch flips between theta - h and theta + h: the routing
// masks of every maximum, reduce_max and maxpool2d (built by their own
// gradient rules with dy = 1) must be identical at both points and at theta.
// A coordinate that crosses a kink is replaced by another (counted as skipped).
//
// Relative error of a derivative a against a reference b:
//   |a - b| / max(|a|, |b|, floor),  floor = fd_floor * max(1, |loss|)
// The floor is where finite differences stop resolving a derivative (their
// rounding noise is ~1e-16 |loss| / h); hand-written vs autodiff (no finite
// differences) uses floor = 1e-9 * max |autodiff gradient of that param|.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compiler/ir/graph.h"

namespace kiln {

struct GradcheckOptions {
  double tolerance = 1e-6;
  int samples = 12;                  // coordinates per large param
  int64_t full_check_limit = 256;    // params with at most this many elements: every coordinate
  uint64_t seed = 1;
  int64_t batch = 4;                 // the open batch dimension
  double step = 1e-5;                // h
  double fd_floor = 1e-4;
  int max_redraws = 8;
  bool check_inputs = false;         // float inputs are checked like params (the gradient with respect to the data)
  // Inputs named here are drawn uniformly from [lo, hi), integers rounded down (a
  // divisor kept from 0); other floats: standard normal, other integers: [0, their index bound).
  std::map<std::string, std::pair<double, double>> input_ranges;
};

struct ParamCheck {
  std::string param;
  int64_t elements = 0;
  int coordinates = 0;               // coordinates checked (plus one direction when sampled)
  int skipped_kinks = 0;
  double autodiff_vs_fd = 0;         // max relative error
  bool handwritten = false;
  double handwritten_vs_autodiff = 0;
  double handwritten_vs_fd = 0;
  std::string divergence;            // where the hand-written gradient departs from autodiff
};

struct GradcheckReport {
  std::vector<ParamCheck> params;
  double loss = 0;
  double kink_margin = 0;            // min |x - y| over every maximum node (infinity if none)
  int draws = 0;
  double tolerance = 0;
  bool passed() const;
  std::string text() const;
};

// `model` needs a scalar "loss" output; every trainable param is checked.
// Throws std::invalid_argument for a graph it cannot check, AutodiffError
// when autodiff itself fails.
GradcheckReport gradcheck(const Graph& model, const GradcheckOptions& options = {});

}  // namespace kiln
