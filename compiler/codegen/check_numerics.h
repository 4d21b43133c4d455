#pragma once
// --check-numerics: run an entry kernel by kernel and compare every node's
// value with the interpreter's, stopping at the first node that differs or is
// not finite. Each kernel reads the interpreter's values of its inputs, so a
// difference is that kernel's own (not rounding amplified downstream). A node differs when max |compiled - interpreter| exceeds
// tolerance x max(max |interpreter value|, kInputScale x max |its inputs| x n),
// n the terms summed into each element by a reduction (1 otherwise): the
// second term keeps results that cancel (a gradient summing to ~0) from
// failing on rounding noise, while a wrong kernel still shows.
#include <map>
#include <string>

#include "compiler/codegen/jit.h"
#include "compiler/interp/interpreter.h"

namespace kiln::codegen {

constexpr double kInputScale = 0.1;

struct NumericsReport {
  bool ok = true;
  int kernels_run = 0;
  int nodes_checked = 0;
  // The first bad node, when !ok.
  std::string node, origin, op, kernel;
  double max_abs_diff = 0, max_abs_ref = 0;
  int64_t worst_index = -1;
  std::string message;      // a sentence naming the JSON node and what is wrong
};

// Random feeds for every input of `entry` at `batch` (seeded): floats in
// [-1, 1), integer labels in [0, depth) of the one_hot they feed (else [0, 2)).
std::map<std::string, interp::Value> random_feeds(const lower::Entry& entry, int64_t batch, uint64_t seed);

// `feeds` holds every entry input and every param/state by name.
NumericsReport check_numerics(const CompiledProgram& cp, Program& prog, const std::string& entry, int64_t batch,
                              const std::map<std::string, interp::Value>& feeds, double tolerance = 1e-4);

}  // namespace kiln::codegen
