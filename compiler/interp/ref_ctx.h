#pragma once
// What a reference kernel sees: its node, its input values, and where to put
// its result. Values are held as doubles whatever their dtype; in f32 mode the
// interpreter rounds every f32 result to float after each op.
#include <cmath>
#include <limits>
#include <stdexcept>
#include <xtensor/xarray.hpp>
// What the kernels in compiler/ops/*.cpp use, included here so that the op
// files (shared with other aspects) need no include changes.
#include <xtensor/xbroadcast.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xoperation.hpp>

#include "compiler/ir/graph.h"

namespace kiln::interp {

using Array = xt::xarray<double>;

struct RefCtx {
  const Node& node;
  const Attrs& attrs;                 // node.attrs (checked, defaulted)
  std::vector<const Array*> in;       // one per node input, concrete shapes
  Array out;                          // the kernel's result
  int64_t batch = -1;                 // run-time size of the open batch dimension (-1: unbound)

  // A declared shape with the open dimension bound to the run-time batch.
  std::vector<size_t> concrete(const Shape& s) const {
    std::vector<size_t> out_shape;
    for (int64_t d : s) {
      if (d == kOpenDim && batch < 0)
        throw std::runtime_error("the open batch dimension is unbound: no input with an open dimension was fed");
      out_shape.push_back(static_cast<size_t>(d == kOpenDim ? batch : d));
    }
    return out_shape;
  }
};

// kiln's NaN semantics (README "NaN and infinity"), numpy's: maximum and
// minimum return a NaN when either operand is one; the "first maximum" of a
// run (argmax, max pooling) is its first NaN when it has one. The generated
// code computes the same (compiler/codegen/emit_expr.cpp).
inline double nan_max(double a, double b) { return std::isnan(a) || a > b ? a : b; }
inline double nan_min(double a, double b) { return std::isnan(a) || a < b ? a : b; }
// Whether v replaces `best` as a run's first maximum: strictly larger, or the first NaN.
inline bool beats_first_max(double v, double best) { return v > best || (std::isnan(v) && !std::isnan(best)); }

// A rank-0 array holding `v`.
inline Array scalar_array(double v) {
  Array a = Array::from_shape({});
  a() = v;
  return a;
}

}  // namespace kiln::interp
