#pragma once
// Static memory planning of a lowered Program:
//   - in-place updates: the kernel computing a param's (or optimizer state's)
//     new value writes it straight into the persistent storage when nothing
//     reads the old value afterwards, and the end-of-step copy goes away;
//   - buffer reuse: every arena buffer lives from its first to its last access
//     in kernel order; buffers whose lifetimes are disjoint share bytes. The
//     offsets come from a greedy-by-size, best-fit interval allocator.
// Entries lowered from one graph share kernels and buffers, so they are
// planned together (over the group's kernel order, of which each entry's
// order is a subsequence); entries of different graphs share the arena's
// bytes outright (they never run at the same time).
#include <cstdint>
#include <set>
#include <vector>

#include "compiler/lower/loop_ir.h"

namespace kiln::lower {

// The kernel positions (indexes into Program::kernels; one group's kernels are
// numbered in execution order) during which an arena buffer holds a value.
struct LiveRange {
  int buffer = -1;
  int first = 0, last = 0;
  int64_t bytes = 0;  // at the maximum batch, 64-byte aligned
};

// Live ranges of the arena buffers of the entries lowered from `graph`.
// A buffer's range also covers every kernel of a node that reads it (so
// check-numerics can refill a node's inputs before any of its kernels).
std::vector<LiveRange> arena_live_ranges(const Program& p, const Graph* graph);

// Rewrites safe updates in place, drops unused kernels, then assigns every
// arena buffer its offset. Sets Entry::arena_bytes, Program::arena_bytes and
// Program::intermediate_bytes (what the arena would be without reuse).
void plan_memory(Program& p);

// The buffers `k` reads or writes (gemm operands and scratch included), each
// once, with the base of every view it reads; `written`, if given, receives
// those it writes.
std::set<int> kernel_buffers(const Program& p, const Kernel& k, std::set<int>* written = nullptr);

// Every load and store of buffer `from` in `k` (gemm operands included) becomes one of `to`.
void rename_buffer(Kernel& k, int from, int to);
// Every load of `buffer` in `e` is at exactly `index`.
bool loads_only_at(const ExprP& e, int buffer, const ExprP& index);

}  // namespace kiln::lower
