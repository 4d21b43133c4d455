#pragma once
// What an op's lowering sees when it emits loop IR. Defined by compiler/lower.
namespace kiln::lower {
struct LowerCtx;
}  // namespace kiln::lower
