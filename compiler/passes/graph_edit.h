#pragma once
// Edits every pass needs: redirecting uses, removing nodes, re-sorting. Each
// keeps every reference into the node list (node inputs, outputs, hand-written
// gradients, updates, layers) consistent, so a pass never patches them itself.
#include <vector>

#include "compiler/ir/graph.h"

namespace kiln {

// Every use of `from` (node inputs, outputs, gradient and update values, layer
// outputs) now reads `to`. `to` must precede every user of `from` (true when
// to < from), which keeps the node list topologically ordered.
void replace_uses(Graph& g, NodeId from, NodeId to);

// Rebuilds the node list as `order` (old ids, each kept node once, inputs
// before users) and renumbers every reference. Returns old id -> new id
// (kNoNode for dropped nodes). Throws std::logic_error if a kept node reads a
// dropped one or `order` is not topological.
std::vector<NodeId> reorder_nodes(Graph& g, const std::vector<NodeId>& order);

// Drops the nodes where keep[i] is false (they must be unused by kept nodes).
std::vector<NodeId> remove_nodes(Graph& g, const std::vector<bool>& keep);

// A stable topological sort: nodes keep their relative order wherever the
// dependencies allow. Used after an edit that makes a node read a later one.
std::vector<NodeId> topological_sort(Graph& g);

// After rewrites that appended replacement nodes and redirected uses to them:
// restores the topological order and drops the nodes nothing needs any more.
void settle_appended_replacements(Graph& g);

// `id` is an output, a gradient's value or an update's value: the graph hands
// it out, so a pass may not drop it or leave it unstored.
bool handed_out(const Graph& g, NodeId id);

// Nodes that must survive dead-code elimination: inputs and params (the
// program's interface), outputs, hand-written gradients, updates, and
// everything they read.
std::vector<bool> live_nodes(const Graph& g);

}  // namespace kiln
