#pragma once
// Parallel full reductions with a fixed summation order.
//
// A kernel that folds a long loop into one scalar (`acc = init; for r in
// [0, n): acc = acc op f(r); out = acc`, e.g. an L2 penalty's sum of squares
// over a 3M-element weight) runs on one thread. This pass cuts [0, n) into
// chunks whose count and bounds depend only on n, folds the chunks in a
// parallel loop into a small partials buffer, then folds the partials in
// chunk order. The result is the same for any thread count (the chunking is
// compile-time), so training stays bitwise reproducible across --threads.
//
// Column reductions (`for r: for i in [0, C): out[i] = out[i] op f(r, i)`:
// batch norm's statistics over every position, and their gradients) split
// the same way over rows: each chunk of rows folds into its own row of
// partials, the partials fold into out in chunk order. They ran on one
// thread while the other waited (mobilenet_small: a third of the step idle).
#include "compiler/lower/loop_ir.h"

namespace kiln::lower {

// Loops shorter than this stay serial (a parallel_for costs more than it saves).
constexpr int64_t kSplitReductionMin = int64_t{1} << 17;
// Elements per chunk: a multiple of every vector width, big enough to amortize the fold.
constexpr int64_t kSplitReductionChunk = int64_t{1} << 15;

// Rewrites every qualifying kernel of `p` in place; adds one arena buffer of
// partials per rewritten kernel (to the entries that run it). Returns how many
// kernels it split. Runs before plan_memory, which places the new buffers.
int split_reductions(Program& p);

}  // namespace kiln::lower
