#include "compiler/ir/graph.h"

#include <sstream>
#include <stdexcept>
#include <unordered_set>

#include "compiler/ops/registry.h"

namespace kiln {

NodeId Graph::find(std::string_view node_name) const {
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].name == node_name) return static_cast<NodeId>(i);
  return kNoNode;
}

NodeId Graph::output(std::string_view output_name) const {
  for (auto& [n, id] : outputs)
    if (n == output_name) return id;
  return kNoNode;
}

std::vector<NodeId> Graph::nodes_with_op(std::string_view op) const {
  std::vector<NodeId> out;
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].op == op) out.push_back(static_cast<NodeId>(i));
  return out;
}

std::vector<std::vector<NodeId>> Graph::users() const {
  std::vector<std::vector<NodeId>> u(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i)
    for (NodeId in : nodes[i].inputs) u.at(static_cast<size_t>(in)).push_back(static_cast<NodeId>(i));
  return u;
}

bool is_trainable(const Node& p) {
  return p.op == "param" && p.attrs.value("role", std::string("param")) == "param" &&
         p.attrs.value("trainable", true);
}

int64_t param_count(const Graph& g, bool trainable_only) {
  int64_t n = 0;
  for (const Node& node : g.nodes) {
    if (node.op != "param" || node.attrs.value("role", std::string("param")) != "param") continue;
    if (trainable_only && !is_trainable(node)) continue;
    n += numel(node.type.shape);
  }
  return n;
}

static std::string attrs_inline(const Node& n) {
  // Shape/dtype of sources are already in the type; keep the listing short.
  Attrs shown = Attrs::object();
  for (auto& [k, v] : n.attrs.items()) {
    if ((n.op == "input" || n.op == "param" || n.op == "constant") && (k == "shape" || k == "dtype")) continue;
    std::string s = v.dump();
    shown[k] = s.size() > 60 ? nlohmann::json(s.substr(0, 57) + "...") : v;
  }
  return shown.empty() ? "" : " " + shown.dump();
}

std::string print_graph(const Graph& g) {
  std::ostringstream os;
  os << "graph " << g.name << " {\n";
  for (const Node& n : g.nodes) {
    os << "  %" << n.name << " = " << n.op << "(";
    for (size_t i = 0; i < n.inputs.size(); ++i) os << (i ? ", %" : "%") << g.node(n.inputs[i]).name;
    os << ")" << attrs_inline(n) << " : " << type_str(n.type);
    if (!n.origin.empty() && n.origin != n.name) os << "  # " << n.origin;
    os << "\n";
  }
  for (auto& [name, id] : g.outputs) os << "  output " << name << " = %" << g.node(id).name << "\n";
  for (auto& [target, value] : g.updates)
    os << "  update %" << g.node(target).name << " <- %" << g.node(value).name << "\n";
  os << "}\n";
  return os.str();
}

std::string print_dot(const Graph& g) {
  std::ostringstream os;
  os << "digraph \"" << g.name << "\" {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n";
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    const char* style = n.op == "param" ? ", style=filled, fillcolor=\"#ffe9b3\""
                        : n.op == "input" ? ", style=filled, fillcolor=\"#cfe8ff\"" : "";
    os << "  n" << i << " [label=\"" << n.name << "\\n" << n.op << " " << type_str(n.type) << "\"" << style << "];\n";
    for (NodeId in : n.inputs) os << "  n" << in << " -> n" << i << ";\n";
  }
  for (auto& [name, id] : g.outputs)
    os << "  out_" << name << " [label=\"" << name << "\", shape=ellipse];\n  n" << id << " -> out_" << name << ";\n";
  os << "}\n";
  return os.str();
}

std::vector<std::string> verify(const Graph& g) {
  std::vector<std::string> problems;
  auto& reg = OpRegistry::get();
  std::unordered_set<std::string> names;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    std::string where = "node %" + n.name + " (#" + std::to_string(i) + ")";
    if (n.name.empty()) problems.push_back(where + ": empty name");
    if (!names.insert(n.name).second) problems.push_back(where + ": duplicate name");
    const OpDef* def = reg.find(n.op);
    if (!def) { problems.push_back(where + ": unknown op '" + n.op + "'"); continue; }
    if (def->composite()) { problems.push_back(where + ": composite op '" + n.op + "' was not expanded"); continue; }
    bool inputs_ok = true;
    for (NodeId in : n.inputs)
      if (in < 0 || static_cast<size_t>(in) >= i) {
        problems.push_back(where + ": input #" + std::to_string(in) + " does not precede it (graph not in topological order)");
        inputs_ok = false;
      }
    if (!def->variadic && n.inputs.size() != def->inputs.size()) {
      problems.push_back(where + ": " + n.op + " takes " + std::to_string(def->inputs.size()) + " inputs, has " +
                         std::to_string(n.inputs.size()));
      continue;
    }
    if (!inputs_ok) continue;
    try {
      Attrs checked = check_attrs(*def, n.attrs);
      std::vector<TensorType> in;
      for (NodeId id : n.inputs) in.push_back(g.node(id).type);
      TensorType t = def->infer(InferCtx{in, checked});
      if (!(t == n.type))
        problems.push_back(where + ": recorded type " + type_str(n.type) + " but its op infers " + type_str(t));
    } catch (const OpError& e) {
      problems.push_back(where + ": " + e.what());
    }
  }
  for (auto& [name, id] : g.outputs)
    if (id < 0 || static_cast<size_t>(id) >= g.nodes.size()) problems.push_back("output '" + name + "' names no node");
  for (auto& [target, value] : g.updates) {
    auto valid = [&](NodeId id) { return id >= 0 && static_cast<size_t>(id) < g.nodes.size(); };
    if (!valid(target) || !valid(value)) { problems.push_back("an update names no node"); continue; }
    if (g.node(target).op != "param")
      problems.push_back("update of %" + g.node(target).name + ": only params and state are updated");
    if (!(g.node(target).type == g.node(value).type))
      problems.push_back("update of %" + g.node(target).name + " " + type_str(g.node(target).type) + " by %" +
                         g.node(value).name + " of type " + type_str(g.node(value).type));
  }
  return problems;
}

void verify_or_throw(const Graph& g, std::string_view stage) {
  auto problems = verify(g);
  if (problems.empty()) return;
  std::string msg = "graph '" + g.name + "' is invalid after " + std::string(stage) + ":";
  for (auto& p : problems) msg += "\n  " + p;
  throw std::runtime_error(msg);
}

}  // namespace kiln
