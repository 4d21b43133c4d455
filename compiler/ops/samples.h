#pragma once
// Sample cases shared by op families: the shapes every sample set covers (odd
// sizes 17 and 33, the open batch dimension, numpy broadcasting both ways).
#include <algorithm>
#include <string>
#include <vector>

#include "compiler/ops/registry.h"

namespace kiln {

struct Range {
  double lo = -1, hi = 1;
};

inline std::vector<OpSample> unary_samples(Range r = {}, DType dt = DType::f32) {
  return {{{{{-1, 17}, r.lo, r.hi, dt}}}, {{{{3, 33}, r.lo, r.hi, dt}}}};
}

inline std::vector<OpSample> binary_samples(Range x = {}, Range y = {}, DType dt = DType::f32) {
  return {{{{{-1, 17}, x.lo, x.hi, dt}, {{-1, 17}, y.lo, y.hi, dt}}},
          {{{{-1, 17}, x.lo, x.hi, dt}, {{17}, y.lo, y.hi, dt}}},
          {{{{}, x.lo, x.hi, dt}, {{33}, y.lo, y.hi, dt}}},
          {{{{3, 1, 5}, x.lo, x.hi, dt}, {{4, 1}, y.lo, y.hi, dt}}}};
}

// The samples of `base` with the attribute `name` set, cycling through
// `values` so that every value and every base sample appears at least once.
inline std::vector<OpSample> with_each(const std::string& name, const std::vector<nlohmann::json>& values,
                                       const std::vector<OpSample>& base) {
  std::vector<OpSample> out;
  for (size_t i = 0; i < std::max(values.size(), base.size()); ++i) {
    OpSample s = base[i % base.size()];
    s.attrs[name] = values[i % values.size()];
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace kiln
