#include "compiler/autodiff/autodiff.h"

#include "compiler/ir/builder.h"
#include "compiler/ops/registry.h"

namespace kiln {

std::vector<NodeId> trainable_params(const Graph& g) {
  std::vector<NodeId> out;
  for (NodeId p : g.params())
    if (is_trainable(g.node(p))) out.push_back(p);
  return out;
}

// Nodes (up to `loss`) lying on a path from some `wrt` node to `loss`.
static std::vector<bool> nodes_on_gradient_path(const Graph& g, NodeId loss, const std::vector<NodeId>& wrt) {
  size_t n = static_cast<size_t>(loss) + 1;
  std::vector<bool> from_wrt(n, false), to_loss(n, false), on_path(n, false);
  for (NodeId w : wrt)
    if (w <= loss) from_wrt[static_cast<size_t>(w)] = true;
  for (size_t i = 0; i < n; ++i)
    for (NodeId in : g.nodes[i].inputs) from_wrt[i] = from_wrt[i] || from_wrt[static_cast<size_t>(in)];
  to_loss[static_cast<size_t>(loss)] = true;
  for (size_t i = n; i-- > 0;) {
    if (!to_loss[i]) continue;
    for (NodeId in : g.nodes[i].inputs) to_loss[static_cast<size_t>(in)] = true;
  }
  for (size_t i = 0; i < n; ++i) on_path[i] = from_wrt[i] && to_loss[i];
  return on_path;
}

static NodeId sum_contributions(GraphBuilder& b, const std::vector<NodeId>& parts) {
  NodeId total = parts.front();
  for (size_t i = 1; i < parts.size(); ++i) total = b.add2("add", total, parts[i]);
  return total;
}

static NodeId zeros_like(GraphBuilder& b, NodeId like) {
  const TensorType t = b.type(like);
  NodeId zero = b.constant(0.0, t.dtype);
  return t.shape.empty() ? zero : b.add("broadcast", {zero}, {{"shape", t.shape}});
}

Gradients differentiate(Graph& g, NodeId loss, const std::vector<NodeId>& wrt) {
  if (loss < 0 || static_cast<size_t>(loss) >= g.nodes.size()) throw AutodiffError("the loss names no node");
  const TensorType loss_type = g.node(loss).type;
  if (!loss_type.shape.empty() || !is_float(loss_type.dtype))
    throw AutodiffError("the loss %" + g.node(loss).name + " must be a float scalar, got " + type_str(loss_type));

  auto& reg = OpRegistry::get();
  GraphBuilder b(g);
  std::vector<bool> on_path = nodes_on_gradient_path(g, loss, wrt);
  std::vector<std::vector<NodeId>> contributions(on_path.size());
  Gradients result;

  b.set_scope("grad/" + g.node(loss).name);
  if (on_path[static_cast<size_t>(loss)]) contributions[static_cast<size_t>(loss)].push_back(b.constant(1.0, loss_type.dtype));

  for (NodeId id = loss; id >= 0; --id) {
    auto& parts = contributions[static_cast<size_t>(id)];
    if (parts.empty()) continue;
    // Copies: adding nodes reallocates g.nodes.
    const Node node = g.node(id);
    b.set_scope("grad/" + node.name);
    b.set_origin(node.origin);
    NodeId cotangent = sum_contributions(b, parts);
    result.cotangents[id] = cotangent;
    if (node.inputs.empty()) continue;
    const OpDef* def = reg.find(node.op);
    if (def->no_grad) continue;
    if (!def->grad)
      throw AutodiffError("cannot differentiate through node %" + node.name + " (op '" + node.op + "'" +
                          (node.origin != node.name ? ", from '" + node.origin + "'" : "") +
                          "): the op has no gradient rule, and the loss depends on a trainable param through it");
    std::vector<NodeId> grads;
    try {
      GradCtx ctx{b, id, node.inputs, id, cotangent};
      grads = def->grad(ctx);
    } catch (const OpError& e) {
      throw AutodiffError("gradient of node %" + node.name + " (op '" + node.op + "'): " + e.what());
    }
    if (grads.size() != node.inputs.size())
      throw std::logic_error("gradient rule of '" + node.op + "' returned " + std::to_string(grads.size()) +
                             " cotangents for " + std::to_string(node.inputs.size()) + " inputs");
    for (size_t k = 0; k < grads.size(); ++k) {
      NodeId in = node.inputs[k];
      if (grads[k] == kNoNode || !on_path[static_cast<size_t>(in)]) continue;
      if (!(g.node(grads[k]).type == g.node(in).type))
        throw std::logic_error("gradient rule of '" + node.op + "' (node %" + node.name + ") gave input " +
                               std::to_string(k) + " a cotangent of type " + type_str(g.node(grads[k]).type) +
                               ", expected " + type_str(g.node(in).type));
      contributions[static_cast<size_t>(in)].push_back(grads[k]);
    }
  }

  b.set_origin("");
  for (NodeId w : wrt) {
    auto it = result.cotangents.find(w);
    if (it != result.cotangents.end()) {
      result.of[w] = it->second;
      continue;
    }
    b.set_scope("grad/" + g.node(w).name);
    result.of[w] = zeros_like(b, w);  // the loss does not depend on w
  }
  return result;
}

}  // namespace kiln
