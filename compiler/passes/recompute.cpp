// recompute: elementwise values cheaper to compute than to store and load,
// computed again in each reader's loop (passes.h states the contract).
#include <functional>
#include <map>
#include <string>

#include "compiler/ops/registry.h"
#include "compiler/passes/graph_edit.h"
#include "compiler/passes/passes.h"

namespace kiln {

namespace {

// Handed out, or a layer's output (`kiln summary` names it).
bool referenced_outside_nodes(const Graph& g, NodeId id) {
  for (auto& layer : g.layers)
    if (layer.output == id) return true;
  return handed_out(g, id);
}

// A value that may be computed again wherever it is read: an op with a
// counted cost, per example (it follows the batch: what a step stores), of one
// elementwise value of its own type and scalars, read only by elementwise ops
// of its shape, and not a value the graph hands out. Whether it is worth it
// (two or more loops would read it, the chain fits the budget) is decided by
// the caller.
bool candidate(const Graph& g, const std::vector<std::vector<NodeId>>& users, NodeId id) {
  const Node& n = g.node(id);
  const OpDef* def = OpRegistry::get().find(n.op);
  if (!def || def->lane_ops <= 0 || !has_open_dim(n.type.shape) || users[static_cast<size_t>(id)].empty() ||
      referenced_outside_nodes(g, id))
    return false;
  int tensors = 0;
  for (NodeId in : n.inputs) {
    const TensorType& t = g.node(in).type;
    if (t == n.type) {
      ++tensors;
      // A contraction's product is not stored when what reads it runs in the
      // GEMM's epilogue: recomputing from the product would store it.
      if (OpRegistry::get().find(g.node(in).op)->pattern != OpPattern::elementwise) return false;
    } else if (numel(t.shape, 1) != 1) {
      // (a per-channel operand would be broadcast in the reader's loop, and a
      // reduction computing that loop inline indexes every operand flat)
      return false;
    }
  }
  if (tensors != 1) return false;
  for (NodeId u : users[static_cast<size_t>(id)]) {
    const Node& reader = g.node(u);
    if (OpRegistry::get().find(reader.op)->pattern != OpPattern::elementwise || reader.type.shape != n.type.shape)
      return false;
  }
  return true;
}

// Marks, readers first (the node list is topological: walk it backwards),
// each value that `may` be copied and that two or more readers would each
// compute: its own readers, a marked one counting as the readers it is copied
// into. Read by one, a value is in that reader's loop already or stored
// either way.
void mark_shared(const Graph& g, const std::vector<std::vector<NodeId>>& users, std::vector<bool>& again,
                 const std::function<bool(size_t)>& may) {
  std::vector<int> readers(g.nodes.size(), 1);
  for (size_t i = g.nodes.size(); i-- > 0;) {
    const bool allowed = may(i);
    again[i] = false;
    if (!allowed) continue;
    int n = 0;
    for (NodeId u : users[i]) n += again[static_cast<size_t>(u)] ? readers[static_cast<size_t>(u)] : 1;
    readers[i] = n;
    again[i] = n >= 2;
  }
}

// Which values to compute again: shared ones, while the chain a copy brings
// along (producers first) fits the budget; a value past it is stored and its
// readers' copies start there. That leaves fewer readers to the values it
// reads, so they are counted again.
std::vector<bool> values_to_recompute(const Graph& g) {
  const auto users = g.users();
  const size_t count = g.nodes.size();
  std::vector<bool> again(count, false);
  mark_shared(g, users, again, [&](size_t i) { return candidate(g, users, static_cast<NodeId>(i)); });
  std::vector<int> chain(count, 0);
  for (size_t i = 0; i < count; ++i) {
    if (!again[i]) continue;
    int cost = OpRegistry::get().find(g.nodes[i].op)->lane_ops;
    for (NodeId in : g.nodes[i].inputs)
      if (again[static_cast<size_t>(in)]) cost += chain[static_cast<size_t>(in)];
    if (cost > kRecomputeLaneOps) again[i] = false;
    else chain[i] = cost;
  }
  const std::vector<bool> within_budget = again;
  mark_shared(g, users, again, [&](size_t i) { return within_budget[i]; });
  return again;
}

}  // namespace

bool recompute_cheap_values(Graph& g) {
  const size_t count = g.nodes.size();
  const std::vector<bool> again = values_to_recompute(g);
  bool changed = false;
  int copies = 0;
  for (size_t r = 0; r < count; ++r) {
    if (again[r]) continue;  // copied into its own readers' chains instead
    std::map<NodeId, NodeId> mine;  // this reader's copy of each value it recomputes
    // A copy of `id` and of every recomputable value it reads, back to stored ones.
    std::function<NodeId(NodeId)> copy = [&](NodeId id) -> NodeId {
      if (!again[static_cast<size_t>(id)]) return id;
      if (auto it = mine.find(id); it != mine.end()) return it->second;
      Node n = g.node(id);
      for (NodeId& in : n.inputs) in = copy(in);
      n.name += "/again" + std::to_string(++copies);
      g.nodes.push_back(std::move(n));
      return mine[id] = static_cast<NodeId>(g.nodes.size() - 1);
    };
    for (size_t slot = 0; slot < g.nodes[r].inputs.size(); ++slot) {
      const NodeId in = g.nodes[r].inputs[slot];
      if (!again[static_cast<size_t>(in)]) continue;
      const NodeId c = copy(in);
      g.nodes[r].inputs[slot] = c;
      changed = true;
    }
  }
  if (changed) settle_appended_replacements(g);
  return changed;
}

}  // namespace kiln
