// Algebraic identities. Every rewrite either redirects a node's uses to an
// earlier node or edits the node in place to read earlier nodes, so the node
// list stays topologically ordered without re-sorting.
#include <optional>

#include "compiler/ops/registry.h"
#include "compiler/passes/graph_edit.h"
#include "compiler/passes/passes.h"

namespace kiln {

// The value of a constant whose elements are all equal.
static std::optional<double> uniform_value(const Node& n) {
  if (n.op != "constant") return std::nullopt;
  const auto& v = n.attrs.at("value");
  if (v.is_number()) return v.get<double>();
  if (!v.is_array() || v.empty()) return std::nullopt;
  double first = v[0].get<double>();
  for (auto& e : v)
    if (e.get<double>() != first) return std::nullopt;
  return first;
}

static std::vector<int64_t> perm_of(const Node& n) { return n.attrs.at("perm").get<std::vector<int64_t>>(); }

static bool is_identity(const std::vector<int64_t>& perm) {
  for (size_t i = 0; i < perm.size(); ++i)
    if (perm[i] != static_cast<int64_t>(i)) return false;
  return true;
}

// The earlier node that `id` can be replaced by, or kNoNode.
static NodeId identity_replacement(const Graph& g, NodeId id) {
  const Node& n = g.node(id);
  auto same_type = [&](NodeId x) { return g.node(x).type == n.type; };
  auto operand_if = [&](int k, double neutral) -> NodeId {
    NodeId other = n.inputs[static_cast<size_t>(1 - k)];
    auto v = uniform_value(g.node(n.inputs[static_cast<size_t>(k)]));
    return v && *v == neutral && same_type(other) ? other : kNoNode;
  };
  if (n.op == "mul" || n.op == "add") {
    double neutral = n.op == "mul" ? 1.0 : 0.0;
    NodeId r = operand_if(1, neutral);
    return r != kNoNode ? r : operand_if(0, neutral);
  }
  if (n.op == "sub") return operand_if(1, 0.0);
  if (n.op == "div") return operand_if(1, 1.0);
  if (n.op == "neg" && g.node(n.inputs[0]).op == "neg") return g.node(n.inputs[0]).inputs[0];
  if ((n.op == "cast" || n.op == "broadcast" || n.op == "reshape") && same_type(n.inputs[0])) return n.inputs[0];
  if (n.op == "transpose" && is_identity(perm_of(n))) return n.inputs[0];
  return kNoNode;
}

// In-place rewrites; true if `n` changed.
static bool fold_into_node(Graph& g, Node& n) {
  if (n.op == "reshape" && g.node(n.inputs[0]).op == "reshape") {
    n.inputs[0] = g.node(n.inputs[0]).inputs[0];
    return true;
  }
  if (n.op == "transpose" && g.node(n.inputs[0]).op == "transpose") {
    const Node& inner = g.node(n.inputs[0]);
    auto outer_perm = perm_of(n), inner_perm = perm_of(inner);
    std::vector<int64_t> composed(outer_perm.size());
    for (size_t i = 0; i < composed.size(); ++i) composed[i] = inner_perm[static_cast<size_t>(outer_perm[i])];
    n.inputs[0] = inner.inputs[0];
    n.attrs["perm"] = composed;
    return true;
  }
  // A binary op broadcasts by itself: an operand broadcast explicitly to a
  // shape the op would produce anyway is read unbroadcast.
  if (n.op == "add" || n.op == "sub" || n.op == "mul" || n.op == "div" || n.op == "maximum") {
    for (size_t k = 0; k < 2; ++k) {
      const Node& operand = g.node(n.inputs[k]);
      if (operand.op != "broadcast") continue;
      const Shape& small = g.node(operand.inputs[0]).type.shape;
      if (broadcast_shapes(small, g.node(n.inputs[1 - k]).type.shape) != n.type.shape) continue;
      n.inputs[k] = operand.inputs[0];
      return true;
    }
    return false;
  }
  if (n.op == "matmul") {
    bool changed = false;
    for (int k = 0; k < 2; ++k) {
      const Node& operand = g.node(n.inputs[static_cast<size_t>(k)]);
      if (operand.op != "transpose" || perm_of(operand) != std::vector<int64_t>{1, 0}) continue;
      const char* flag = k == 0 ? "transpose_a" : "transpose_b";
      n.attrs[flag] = !n.attrs.at(flag).get<bool>();
      n.inputs[static_cast<size_t>(k)] = operand.inputs[0];
      changed = true;
    }
    return changed;
  }
  return false;
}

bool simplify_algebra(Graph& g) {
  std::vector<bool> keep(g.nodes.size(), true);
  bool changed = false;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    // Rewrite in place until nothing applies, then try to drop the node.
    while (fold_into_node(g, g.nodes[i])) changed = true;
    NodeId r = identity_replacement(g, static_cast<NodeId>(i));
    if (r == kNoNode) continue;
    replace_uses(g, static_cast<NodeId>(i), r);
    keep[i] = false;
    changed = true;
  }
  if (changed) remove_nodes(g, keep);
  return changed;
}

}  // namespace kiln
