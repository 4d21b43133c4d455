#include "compiler/passes/batch_rows.h"

#include <algorithm>

#include "compiler/ops/registry.h"

namespace kiln {

int open_axis(const TensorType& t) {
  int axis = -1;
  for (int a = 0; a < t.rank(); ++a)
    if (t.shape[static_cast<size_t>(a)] == kOpenDim) axis = axis < 0 ? a : -2;
  return axis;
}

namespace {

// The axes of input 0 along which the op reads elements at other positions
// (OpDef::mixes_along; unset: by its pattern, the safe answer where the
// pattern does not tell).
std::vector<int> mixing_axes(const Graph& g, const Node& n, const OpDef& def) {
  if (def.mixes_along) return def.mixes_along(g, n);
  const int rank = n.inputs.empty() ? 0 : g.node(n.inputs[0]).type.rank();
  switch (def.pattern) {
    case OpPattern::elementwise:
    case OpPattern::broadcast:
    case OpPattern::source: return {};
    case OpPattern::reduction:
      if (def.algebra.reduced_axes) return def.algebra.reduced_axes(n, rank);
      if (def.algebra.summed_axes) return def.algebra.summed_axes(n, rank);
      return every_axis(rank);
    default: return every_axis(std::max(rank, 1));
  }
}

std::string why(const Node& n, const std::string& what) {
  return "node '" + n.name + "' (op " + n.op + (n.origin.empty() ? "" : ", JSON node " + n.origin) + ") " + what;
}

}  // namespace

std::string rows_mixed(const Graph& g, const std::vector<bool>& needed, const std::vector<NodeId>& outputs) {
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!needed[i]) continue;
    const Node& n = g.nodes[i];
    const OpDef* def = OpRegistry::get().find(n.op);
    if (!def) return why(n, "is not a registered op");
    const int out_axis = open_axis(n.type);
    if (out_axis == -2) return why(n, "has several open dimensions");
    // A fed tensor is cut into slices along its axis 0.
    if (def->interface && out_axis > 0) return why(n, "is fed with its batch dimension at axis " + std::to_string(out_axis));
    bool input_open = false;
    const bool broadcasts = def->pattern == OpPattern::elementwise || def->pattern == OpPattern::broadcast;
    for (NodeId in : n.inputs) {
      const TensorType& t = g.node(in).type;
      const int a = open_axis(t);
      if (a == -2) return why(n, "reads a value with several open dimensions");
      input_open = input_open || a >= 0;
      // Numpy broadcasting aligns trailing axes: the batch must stay the batch.
      if (broadcasts && a >= 0 && a + n.type.rank() - t.rank() != out_axis)
        return why(n, "broadcasts its batch dimension onto another axis");
    }
    // A value that does not grow with the batch but reads one that does
    // depends on which rows the call holds (a sum over the batch, dim_size).
    if (input_open && out_axis < 0) return why(n, "reduces the batch dimension away");
    const bool random_or_unknown =
        !def->mixes_along && (def->pattern == OpPattern::opaque || def->pattern == OpPattern::data_movement);
    if (random_or_unknown && (input_open || out_axis >= 0))
      return why(n, "does not say how it treats the batch dimension (OpDef::mixes_along)");
    if (n.inputs.empty()) continue;
    const std::vector<int> mixes = mixing_axes(g, n, *def);
    const int rank0 = g.node(n.inputs[0]).type.rank();
    const size_t described = def->mixing_inputs < 0 ? n.inputs.size() : static_cast<size_t>(def->mixing_inputs);
    for (size_t i = 0; i < std::min(described, n.inputs.size()); ++i) {
      const TensorType& t = g.node(n.inputs[i]).type;
      const int a = open_axis(t);
      if (a >= 0 && t.rank() == rank0 && std::find(mixes.begin(), mixes.end(), a) != mixes.end())
        return why(n, "combines elements along the batch dimension (axis " + std::to_string(a) + ")");
    }
  }
  for (NodeId out : outputs) {
    const int a = open_axis(g.node(out).type);
    if (a != 0) return "output '" + g.node(out).name + "' " + (a < 0 ? "has no batch dimension" : "has its batch dimension at axis " + std::to_string(a));
  }
  return "";
}

}  // namespace kiln
