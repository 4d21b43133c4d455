// Algebraic identities. Every rewrite either redirects a node's uses to an
// earlier node or edits the node in place to read earlier nodes, so the node
// list stays topologically ordered without re-sorting.
#include <optional>

#include "compiler/ops/registry.h"
#include "compiler/passes/graph_edit.h"
#include "compiler/passes/passes.h"

namespace kiln {

static const OpDef& def_of(const Node& n) { return *OpRegistry::get().find(n.op); }

// The op takes `n`'s attributes and operands and still gives n's type.
static bool accepts(const Graph& g, const OpDef& def, const Node& n) {
  std::vector<TensorType> in;
  for (NodeId x : n.inputs) in.push_back(g.node(x).type);
  try {
    return def.infer(InferCtx{in, n.attrs}) == n.type;
  } catch (const OpError&) {
    return false;
  }
}

// The earlier node that `id` can be replaced by, or kNoNode.
static NodeId identity_replacement(const Graph& g, NodeId id) {
  const Node& n = g.node(id);
  const OpAlgebra& alg = def_of(n).algebra;
  auto same_type = [&](NodeId x) { return g.node(x).type == n.type; };
  // x op e -> x when the constant operand k is the op's identity on that side.
  auto operand_if = [&](size_t k, const std::optional<double>& identity) -> NodeId {
    if (!identity || n.inputs.size() != 2) return kNoNode;
    NodeId other = n.inputs[1 - k];
    auto v = uniform_value(g.node(n.inputs[k]));
    return v && *v == *identity && same_type(other) ? other : kNoNode;
  };
  if (NodeId r = operand_if(1, alg.right_identity); r != kNoNode) return r;
  if (NodeId r = operand_if(0, alg.left_identity); r != kNoNode) return r;
  if (alg.involution && g.node(n.inputs[0]).op == n.op) return g.node(n.inputs[0]).inputs[0];
  if (alg.noop_if_type_unchanged && same_type(n.inputs[0])) return n.inputs[0];
  if (alg.is_noop && alg.is_noop(n)) return n.inputs[0];
  return kNoNode;
}

// In-place rewrites; true if `n` changed.
static bool fold_into_node(Graph& g, Node& n) {
  const OpDef& def = def_of(n);
  if (def.algebra.compose && g.node(n.inputs[0]).op == n.op) {
    def.algebra.compose(n, g.node(n.inputs[0]));
    return true;
  }
  // An elementwise op broadcasts by itself: an operand broadcast explicitly to
  // a shape the op would produce anyway is read unbroadcast.
  if (def.pattern == OpPattern::elementwise && n.inputs.size() >= 2) {
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      const Node& operand = g.node(n.inputs[k]);
      if (def_of(operand).pattern != OpPattern::broadcast) continue;
      Shape shape = g.node(operand.inputs[0]).type.shape;
      for (size_t j = 0; j < n.inputs.size(); ++j)
        if (j != k) shape = broadcast_shapes(shape, g.node(n.inputs[j]).type.shape);
      if (shape != n.type.shape) continue;
      n.inputs[k] = operand.inputs[0];
      return true;
    }
    return false;
  }
  // A contraction reads a transposed matrix operand through its transpose flag.
  bool changed = false;
  for (size_t k = 0; k < def.algebra.transpose_flags.size() && k < n.inputs.size(); ++k) {
    const std::string& flag = def.algebra.transpose_flags[k];
    const Node& operand = g.node(n.inputs[k]);
    const auto& swaps = def_of(operand).algebra.swaps_matrix_axes;
    if (flag.empty() || !swaps || !swaps(operand)) continue;
    Node folded = n;
    folded.attrs[flag] = !n.attrs.at(flag).get<bool>();
    folded.inputs[k] = operand.inputs[0];
    if (!accepts(g, def, folded)) continue;  // matmul's sum_batch wants transpose_a as it is
    n = std::move(folded);
    changed = true;
  }
  return changed;
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
