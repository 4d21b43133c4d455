// Constant folding through the interpreter's reference kernels: the folded
// value is by definition what the op means.
#include <algorithm>
#include <cmath>

#include "compiler/interp/interpreter.h"
#include "compiler/ops/registry.h"
#include "compiler/passes/passes.h"

namespace kiln {

static bool foldable(const Graph& g, const Node& n) {
  const OpDef& def = *OpRegistry::get().find(n.op);
  if (n.inputs.empty() || !def.pure || def.fold_from_types) return false;
  if (has_open_dim(n.type.shape) || numel(n.type.shape) > kMaxFoldedElements) return false;
  for (NodeId in : n.inputs)
    if (g.node(in).op != "constant") return false;
  return true;
}

// Runs node `id` alone on its constant inputs.
static interp::Value evaluate_alone(const Graph& g, NodeId id) {
  Graph single;
  single.name = g.name + ".fold";
  Node n = g.node(id);
  for (NodeId& in : n.inputs) {
    Node c = g.node(in);
    c.name = "in" + std::to_string(single.nodes.size());
    in = static_cast<NodeId>(single.nodes.size());
    single.nodes.push_back(std::move(c));
  }
  single.nodes.push_back(n);
  single.outputs.push_back({"value", static_cast<NodeId>(single.nodes.size() - 1)});
  interp::Interpreter interpreter(single, interp::Precision::f32);
  return interpreter.run({}, {"value"}).at("value");
}

static void become_constant(Node& n, const nlohmann::json& value) {
  n.op = "constant";
  n.inputs.clear();
  n.attrs = Attrs{{"value", value}, {"shape", n.type.shape}, {"dtype", dtype_name(n.type.dtype)}};
}

bool fold_constants(Graph& g) {
  bool changed = false;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    if (const auto& from_types = OpRegistry::get().find(n.op)->fold_from_types) {
      if (auto v = from_types(g, n)) {
        become_constant(n, *v);
        changed = true;
      }
      continue;
    }
    if (!foldable(g, n)) continue;
    interp::Value v = evaluate_alone(g, static_cast<NodeId>(i));
    // A constant holds finite numbers only (JSON has no others): a node that
    // evaluates to an infinity or NaN (1/0, an ONNX -inf fill) stays computed.
    if (!std::all_of(v.data.begin(), v.data.end(), [](double x) { return std::isfinite(x); })) continue;
    become_constant(g.nodes[i], n.type.shape.empty() ? nlohmann::json(v.data.at(0)) : nlohmann::json(v.data));
    changed = true;
  }
  return changed;
}

}  // namespace kiln
