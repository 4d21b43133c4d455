#pragma once
// Shared by the interp_*_test.cpp files: build a one-op graph from fed values
// and run it through the reference interpreter.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "compiler/interp/interpreter.h"
#include "compiler/ir/builder.h"

namespace kiln::interp_test {

using interp::Precision;
using interp::Value;

inline Value val(Shape shape, std::vector<double> data, DType dtype = DType::f32) {
  return Value{dtype, std::move(shape), std::move(data)};
}

// Inputs are declared with the fed value's type (or an explicit one, e.g. with
// an open batch dimension); run() fetches one node.
struct OpGraph {
  Graph g;
  GraphBuilder b{g};
  std::map<std::string, Value> feeds;

  NodeId in(const std::string& name, const Value& v) { return in(name, v, v.shape); }
  NodeId in(const std::string& name, const Value& v, Shape declared) {
    feeds[name] = v;
    return b.input(name, {v.dtype, std::move(declared)});
  }
  NodeId op(const std::string& name, std::vector<NodeId> inputs, Attrs attrs = Attrs::object()) {
    return b.add(name, std::move(inputs), std::move(attrs));
  }
  Value run(NodeId out, Precision p = Precision::f64) {
    g.outputs = {{"out", out}};
    return interp::Interpreter(g, p).run(feeds, {"out"}).at("out");
  }
};

// Shape equal, every value within an absolute + relative tolerance.
inline void check_value(const Value& got, const Shape& shape, const std::vector<double>& want, double tol = 1e-12) {
  REQUIRE(got.shape == shape);
  REQUIRE(got.data.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i << ": got " << got.data[i] << ", want " << want[i]);
    if (std::isinf(want[i])) CHECK(got.data[i] == want[i]);
    else CHECK(std::abs(got.data[i] - want[i]) <= tol * (1 + std::abs(want[i])));
  }
}

}  // namespace kiln::interp_test
