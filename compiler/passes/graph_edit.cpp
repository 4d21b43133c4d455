#include "compiler/passes/graph_edit.h"

#include "compiler/ops/registry.h"

#include <queue>
#include <stdexcept>

namespace kiln {

void replace_uses(Graph& g, NodeId from, NodeId to) {
  for (Node& n : g.nodes)
    for (NodeId& in : n.inputs)
      if (in == from) in = to;
  for (auto& [name, id] : g.outputs)
    if (id == from) id = to;
  for (auto& [param, grad] : g.gradients)
    if (grad == from) grad = to;
  for (auto& [target, value] : g.updates)
    if (value == from) value = to;
  for (LayerInfo& l : g.layers)
    if (l.output == from) l.output = to;
}

std::vector<NodeId> reorder_nodes(Graph& g, const std::vector<NodeId>& order) {
  std::vector<NodeId> new_id(g.nodes.size(), kNoNode);
  std::vector<Node> nodes;
  nodes.reserve(order.size());
  for (NodeId old : order) {
    Node n = std::move(g.nodes.at(static_cast<size_t>(old)));
    for (NodeId& in : n.inputs) {
      in = new_id.at(static_cast<size_t>(in));
      if (in == kNoNode)
        throw std::logic_error("reorder_nodes: node %" + n.name + " reads a node that is dropped or placed after it");
    }
    new_id[static_cast<size_t>(old)] = static_cast<NodeId>(nodes.size());
    nodes.push_back(std::move(n));
  }
  g.nodes = std::move(nodes);
  auto remap = [&](NodeId id, const std::string& what) {
    NodeId r = new_id.at(static_cast<size_t>(id));
    if (r == kNoNode) throw std::logic_error("reorder_nodes: " + what + " refers to a dropped node");
    return r;
  };
  for (auto& [name, id] : g.outputs) id = remap(id, "output '" + name + "'");
  std::map<NodeId, NodeId> grads;
  for (auto& [param, grad] : g.gradients) grads[remap(param, "a gradient")] = remap(grad, "a gradient");
  g.gradients = std::move(grads);
  for (auto& [target, value] : g.updates) target = remap(target, "an update"), value = remap(value, "an update");
  // Layers are descriptive (kiln summary): a layer whose output is gone is dropped.
  std::vector<LayerInfo> layers;
  for (LayerInfo l : g.layers) {
    if (l.output == kNoNode || new_id.at(static_cast<size_t>(l.output)) == kNoNode) continue;
    l.output = new_id[static_cast<size_t>(l.output)];
    std::vector<NodeId> params;
    for (NodeId p : l.params)
      if (new_id.at(static_cast<size_t>(p)) != kNoNode) params.push_back(new_id[static_cast<size_t>(p)]);
    l.params = std::move(params);
    layers.push_back(std::move(l));
  }
  g.layers = std::move(layers);
  return new_id;
}

std::vector<NodeId> remove_nodes(Graph& g, const std::vector<bool>& keep) {
  std::vector<NodeId> order;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (keep.at(i)) order.push_back(static_cast<NodeId>(i));
  return reorder_nodes(g, order);
}

std::vector<NodeId> topological_sort(Graph& g) {
  size_t n = g.nodes.size();
  std::vector<int> pending(n, 0);
  std::vector<std::vector<NodeId>> users(n);
  for (size_t i = 0; i < n; ++i)
    for (NodeId in : g.nodes[i].inputs) {
      ++pending[i];
      users.at(static_cast<size_t>(in)).push_back(static_cast<NodeId>(i));
    }
  // Kahn's algorithm, always taking the ready node that came first.
  std::priority_queue<NodeId, std::vector<NodeId>, std::greater<>> ready;
  for (size_t i = 0; i < n; ++i)
    if (pending[i] == 0) ready.push(static_cast<NodeId>(i));
  std::vector<NodeId> order;
  while (!ready.empty()) {
    NodeId id = ready.top();
    ready.pop();
    order.push_back(id);
    for (NodeId u : users[static_cast<size_t>(id)])
      if (--pending[static_cast<size_t>(u)] == 0) ready.push(u);
  }
  if (order.size() != n) throw std::logic_error("graph '" + g.name + "' has a cycle");
  return reorder_nodes(g, order);
}

void settle_appended_replacements(Graph& g) {
  topological_sort(g);
  remove_nodes(g, live_nodes(g));
}

bool handed_out(const Graph& g, NodeId id) {
  for (auto& [name, out] : g.outputs)
    if (out == id) return true;
  for (auto& [param, grad] : g.gradients)
    if (grad == id) return true;
  for (auto& [target, value] : g.updates)
    if (value == id) return true;
  return false;
}

std::vector<bool> live_nodes(const Graph& g) {
  std::vector<bool> live(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (OpRegistry::get().find(g.nodes[i].op)->interface) live[i] = true;
  auto mark = [&](NodeId id) { live.at(static_cast<size_t>(id)) = true; };
  for (auto& [name, id] : g.outputs) mark(id);
  for (auto& [param, grad] : g.gradients) mark(param), mark(grad);
  for (auto& [target, value] : g.updates) mark(target), mark(value);
  for (size_t i = g.nodes.size(); i-- > 0;)
    if (live[i])
      for (NodeId in : g.nodes[i].inputs) live[static_cast<size_t>(in)] = true;
  return live;
}

}  // namespace kiln
