#pragma once
// What the data-movement ops' attributes mean, shared by their shape rules,
// reference kernels and lowerings (compiler/ops/movement*.cpp).
#include <string>
#include <vector>

#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"

namespace kiln {

// One axis of a slice: `count` elements from `start`, `step` apart (an axis
// not sliced: start 0, step 1, its whole length).
struct SliceAxis {
  int64_t start = 0, step = 1, count = 0;
};
// Resolves starts/ends/axes/steps against the input shape (ONNX rules); throws OpError.
std::vector<SliceAxis> resolve_slice(const Attrs& attrs, const Shape& in);

struct PadSpec {
  std::vector<int64_t> before, after;
  std::string mode;  // constant | reflect | edge
  double value = 0;
};
PadSpec pad_spec(const Attrs& attrs, const Shape& in);
// Where output position o along an axis of size d reads from; `inside` is
// false on the border (constant mode fills it).
int64_t pad_source(int64_t o, int64_t before, int64_t d, const std::string& mode, bool& inside);
lower::E pad_source_expr(lower::E o, int64_t before, lower::E d, const std::string& mode, lower::E& inside);

// gather's result: data's shape with the axis replaced by the indices' shape.
TensorType gather_type(const TensorType& data, const TensorType& indices, int axis);
// OpDef::index_bound of ops whose input 1 indexes input 0 along attribute
// "axis" (gather, scatter_add, gather_elements, scatter_elements_add).
int64_t indices_along_axis_bound(const Graph& g, const Node& n, int k);

// The other aspects of the family (movement_kernels.cpp).
void add_movement_gradients(OpRegistry& r);
void add_movement_reference(OpRegistry& r);
void add_movement_lowering(OpRegistry& r);

}  // namespace kiln
