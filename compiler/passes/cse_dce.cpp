// Common-subexpression and dead-code elimination.
#include <string>
#include <unordered_map>

#include "compiler/ops/registry.h"
#include "compiler/passes/graph_edit.h"
#include "compiler/passes/passes.h"

namespace kiln {

bool eliminate_common_subexpressions(Graph& g) {
  std::unordered_map<std::string, NodeId> first_with_key;
  std::vector<bool> keep(g.nodes.size(), true);
  bool changed = false;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    if (!OpRegistry::get().find(n.op)->pure) continue;  // two inputs (params, random draws) are two values
    // Inputs were already redirected to their earliest equal node, so equal
    // values end up with equal keys.
    std::string key = n.op + "(";
    for (NodeId in : n.inputs) key += std::to_string(in) + ",";
    key += ")" + n.attrs.dump() + ":" + type_str(n.type);
    auto [it, fresh] = first_with_key.try_emplace(key, static_cast<NodeId>(i));
    if (fresh) continue;
    replace_uses(g, static_cast<NodeId>(i), it->second);
    keep[i] = false;
    changed = true;
  }
  if (changed) remove_nodes(g, keep);
  return changed;
}

bool eliminate_dead_code(Graph& g) {
  std::vector<bool> live = live_nodes(g);
  for (bool l : live)
    if (!l) {
      remove_nodes(g, live);
      return true;
    }
  return false;
}

}  // namespace kiln
