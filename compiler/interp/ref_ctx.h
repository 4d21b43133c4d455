#pragma once
// What a reference kernel sees: its node, its input values, and where to put
// its result. Values are held as doubles whatever their dtype; in f32 mode the
// interpreter rounds every f32 result to float after each op.
#include <xtensor/xarray.hpp>

#include "compiler/ir/graph.h"

namespace kiln::interp {

using Array = xt::xarray<double>;

struct RefCtx {
  const Node& node;
  const Attrs& attrs;                 // node.attrs (checked, defaulted)
  std::vector<const Array*> in;       // one per node input, concrete shapes
  Array out;                          // the kernel's result
  int64_t batch = 0;                  // run-time size of the open batch dimension (0: none fed)

  // A declared shape with the open dimension bound to the run-time batch.
  std::vector<size_t> concrete(const Shape& s) const {
    std::vector<size_t> out_shape;
    for (int64_t d : s) out_shape.push_back(static_cast<size_t>(d == kOpenDim ? batch : d));
    return out_shape;
  }
};

// A rank-0 array holding `v`.
inline Array scalar_array(double v) {
  Array a = Array::from_shape({});
  a() = v;
  return a;
}

}  // namespace kiln::interp
