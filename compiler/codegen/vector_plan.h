#pragma once
// The vectorizer's decision for an innermost loop (see vectorize.cpp); free of
// LLVM types so tests and tools can ask it.
#include <map>
#include <optional>
#include <set>

#include "compiler/lower/loop_ir.h"

namespace kiln::codegen {

// Which innermost loops vectorize, and how each local behaves in them.
struct VectorPlan {
  enum class LocalRole { Temp, Reduction };
  std::map<int, LocalRole> locals;     // locals assigned in the loop
  std::map<int, lower::Op> reduce_op;  // Reduction locals -> combining op
};
// The stride of `index` along loop variable `v` (0 = invariant), if it is a
// constant; `variant` are locals assigned inside the loop.
std::optional<int64_t> stride_along(const lower::ExprP& index, int v, const std::set<int>& variant);
// A plan when the innermost loop `loop` can be vectorized, else nullopt.
std::optional<VectorPlan> plan_vector_loop(const lower::Stmt& loop);

}  // namespace kiln::codegen
