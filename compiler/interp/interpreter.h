#pragma once
// The reference interpreter: the definition of what every op means. It runs
// any verified graph on xtensor, in f32 (every f32 result rounded to float
// after each op) or in f64 (every f32 promoted, for gradient checks).
// This header keeps xtensor out of its users: values are plain row-major buffers.
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
  // feeds: every input and param by node name. Returns the values of `fetch`
  // (node names or output names); empty fetch = every graph output.
  // Throws std::runtime_error naming the node for a missing feed or a shape
  // that does not fit the declared type.
  std::map<std::string, Value> run(const std::map<std::string, Value>& feeds,
                                   const std::vector<std::string>& fetch = {}) const;
 private:
  const Graph& g_;
  Precision p_;
};

// Draws every param's initial value from its initializer (seeded, reproducible).
std::map<std::string, Value> init_params(const Graph& g);

}  // namespace kiln::interp
