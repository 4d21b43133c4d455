#pragma once
// Training and inference forms of a graph. A model graph keeps ops like
// batch_norm and dropout as they were written; each entry point compiles the
// form of its mode: the train step in training (batch statistics, running
// statistics updated by the step, dropout masks drawn by step), eval_step and
// predict in inference (running statistics, no dropout).
#include "compiler/ir/graph.h"
#include "compiler/ops/registry.h"

namespace kiln {

// Whether any node's op computes differently in training and inference.
bool has_modes(const Graph& g);

// Replaces every such node by its op's decomposition for ctx.mode (keeping
// the node's name, so outputs and errors still point at it), re-sorts and
// drops what no longer feeds anything. Returns whether anything changed.
bool specialize_mode(Graph& g, const ModeCtx& ctx);

// The graph's seed (its JSON "seed", else 0): what randomness in it draws from.
uint64_t graph_seed(const Graph& g);

}  // namespace kiln
