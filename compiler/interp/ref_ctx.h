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
};

}  // namespace kiln::interp
