// factor-sums: a sum of a product by a factor that is the same along every
// summed axis is the sum times that factor, and a sum of an additive unary op
// (neg) is that op of the sum (passes.h states the contract).
//
// Why: reverse mode writes a normalization's gradient as sums of products of
// the incoming gradient with per-channel values (batch norm from primitives:
// sum(-(dy * scale[c])) beside sum(dy)). Each such sum is a pass over a
// tensor of the activation's size, and it keeps the product stored because
// two kernels read it. Factored, the sum is of a value already summed (cse
// merges the two) or of one already stored, and the product has one reader
// left, the elementwise op that fuses it.
#include <optional>
#include <string>

#include "compiler/ops/registry.h"
#include "compiler/passes/graph_edit.h"
#include "compiler/passes/passes.h"

namespace kiln {

namespace {

const OpDef& def_of(const Node& n) { return *OpRegistry::get().find(n.op); }

// The value `c` (of shape c_shape) broadcast against a tensor of rank `rank`
// is the same along every axis in `axes`: each is absent from c or of size 1.
// When the sum drops the axes (`kept` false), c must also lie wholly after
// them: broadcast against the sum, its axes then still meet the same ones
// (c [3, 1] against x [3, 3, 3] summed over axis 2 would meet axes 0 and 1
// of x before, axes 0 and 1 of the [3, 3] sum after: another product).
bool same_along(const Shape& c_shape, int rank, const std::vector<int>& axes, bool kept) {
  const int offset = rank - static_cast<int>(c_shape.size());
  if (offset < 0) return false;
  for (int a : axes) {
    const int i = a - offset;
    if (i >= 0 && (!kept || c_shape[static_cast<size_t>(i)] != 1)) return false;
  }
  return true;
}

// `op` applied to `inputs` with `attrs`, appended to the graph, if the op
// accepts them; its type is the op's shape rule's.
std::optional<NodeId> append(Graph& g, const std::string& op, const std::vector<NodeId>& inputs, const Attrs& attrs,
                             const std::string& name, const std::string& origin) {
  std::vector<TensorType> in;
  for (NodeId x : inputs) in.push_back(g.node(x).type);
  Node n;
  n.op = op;
  n.inputs = inputs;
  n.attrs = attrs;
  n.name = name;
  n.origin = origin;
  try {
    n.type = OpRegistry::get().find(op)->infer(InferCtx{in, attrs});
  } catch (const OpError&) {
    return std::nullopt;
  }
  g.nodes.push_back(std::move(n));
  return static_cast<NodeId>(g.nodes.size() - 1);
}

// The node that computes sum `id` factored, appended (with the sum of the
// unfactored operand before it), or kNoNode when neither rule applies.
NodeId factored(Graph& g, NodeId id, int& fresh) {
  const Node sum = g.node(id);  // a copy: appending moves the node list
  const OpDef& def = def_of(sum);
  if (!def.algebra.summed_axes || sum.inputs.size() != 1) return kNoNode;
  const Node term = g.node(sum.inputs[0]);
  const OpDef& term_def = def_of(term);
  const int rank = term.type.rank();
  const std::vector<int> axes = def.algebra.summed_axes(sum, rank);
  // The sum of x is named after x, the factored result after the sum it replaces.
  auto name = [&](const std::string& base, const char* what) {
    std::string s = base + "/" + what;
    while (g.find(s) != kNoNode) s = base + "/" + what + std::to_string(++fresh);
    return s;
  };
  auto sum_of = [&](NodeId x) { return append(g, sum.op, {x}, sum.attrs, name(g.node(x).name, "summed"), sum.origin); };
  // Only a term of the sum's input shape is factored: its sum has the sum's type.
  auto full = [&](NodeId x) { return g.node(x).type == term.type; };
  if (term_def.algebra.additive && term.inputs.size() == 1 && full(term.inputs[0])) {
    const std::optional<NodeId> inner = sum_of(term.inputs[0]);
    if (!inner) return kNoNode;
    const std::optional<NodeId> outer = append(g, term.op, {*inner}, term.attrs, name(sum.name, "factored"), sum.origin);
    return outer && g.node(*outer).type == sum.type ? *outer : kNoNode;
  }
  if (!term_def.algebra.multiplies || term.inputs.size() != 2) return kNoNode;
  const bool kept = sum.type.rank() == rank;  // the sum keeps its summed axes as size 1
  for (size_t k = 0; k < 2; ++k) {
    const NodeId x = term.inputs[k], c = term.inputs[1 - k];
    if (!full(x) || full(c) || !same_along(g.node(c).type.shape, rank, axes, kept)) continue;
    const size_t mark = g.nodes.size();
    const std::optional<NodeId> inner = sum_of(x);
    if (!inner) return kNoNode;
    std::vector<NodeId> operands = {kNoNode, kNoNode};
    operands[k] = *inner;
    operands[1 - k] = c;
    const std::optional<NodeId> outer = append(g, term.op, operands, term.attrs, name(sum.name, "factored"), sum.origin);
    if (outer && g.node(*outer).type == sum.type) return *outer;
    g.nodes.resize(mark);  // c broadcast gives another shape (keepdims off, c of full rank): leave it
  }
  return kNoNode;
}

}  // namespace

bool factor_sums(Graph& g) {
  const size_t count = g.nodes.size();
  bool changed = false;
  int fresh = 0;
  for (size_t i = 0; i < count; ++i) {
    const NodeId replacement = factored(g, static_cast<NodeId>(i), fresh);
    if (replacement == kNoNode) continue;
    replace_uses(g, static_cast<NodeId>(i), replacement);
    changed = true;
  }
  if (changed) settle_appended_replacements(g);
  return changed;
}

}  // namespace kiln
