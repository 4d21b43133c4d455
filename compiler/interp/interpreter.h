#pragma once
// The reference interpreter: the definition of what every op means. It runs
// any verified graph on xtensor, in f32 (every f32 result rounded to float
// after each op) or in f64 (every f32 promoted, for gradient checks).
// This header keeps xtensor out of its users: values are plain row-major buffers.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compiler/ir/graph.h"

namespace kiln::interp {

enum class Precision { f32, f64 };

// A concrete tensor value: shape has no open dimension; data is row-major,
// every dtype held as double (bool as 0/1).
struct Value {
  DType dtype = DType::f32;
  Shape shape;
  std::vector<double> data;
  int64_t size() const { return static_cast<int64_t>(data.size()); }
};

class Interpreter {
 public:
  explicit Interpreter(const Graph& g, Precision p = Precision::f32);
  // feeds: every input and param the fetched values depend on, by node name.
  // Returns the values of `fetch` (output names or node names), keyed by the
  // name asked for; empty fetch = every graph output. Only the nodes the fetch
  // needs are computed. A fed value's dtype class (float/integer/bool) and every
  // static dimension must match its node's declared type; the open batch
  // dimension is bound by the first fed input that has one, and the others must
  // agree. Returned values carry their node's declared dtype (in f64 mode an f32
  // node's data is simply not rounded).
  // Throws std::runtime_error naming the node for a missing or unknown feed, a
  // value that does not fit its declared type, or an unknown fetch name.
  std::map<std::string, Value> run(const std::map<std::string, Value>& feeds,
                                   const std::vector<std::string>& fetch = {}) const;
 private:
  const Graph& g_;
  Precision p_;
};

// Draws every param's initial value from its initializer (seeded, reproducible;
// see runtime/init/initializers.h). f32 params are rounded to float.
std::map<std::string, Value> init_params(const Graph& g);
// The same, with every param's seed re-derived from `graph_seed` and the param
// name (param_seed), as if the graph had been written with "seed": graph_seed.
std::map<std::string, Value> init_params(const Graph& g, uint64_t graph_seed);

// Names of the `input` nodes that the given fetch names (outputs or nodes;
// empty = every output) depend on, in graph order. Throws for an unknown name.
std::vector<std::string> inputs_needed(const Graph& g, const std::vector<std::string>& fetch);

}  // namespace kiln::interp
