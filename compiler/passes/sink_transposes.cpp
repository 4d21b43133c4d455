// sink-transposes: an elementwise op whose operands are transposes by one
// permutation p, or small values computed from params and constants alone
// (a bias, a scale, a scalar), runs before the permutation instead:
//   ew(T_p(x), T_p(y), c) -> T_p(ew(x, y, c')),  c' = c laid out as x;
// and a reduction of T_p(x) reduces x over the permuted axes:
//   reduce(T_p(x), A) -> T_q(reduce(x, p[A])), q the kept axes' order.
// A channels-first model (every imported ONNX one) is lowered as
// channels-last convolutions with a transpose before and after each; moved
// down through the bias, activation and residual add between two
// convolutions, the one after meets the one before the next, and algebra
// composes the pair away: no copy of the activations per convolution.
#include <algorithm>

#include "compiler/ir/builder.h"
#include "compiler/ops/registry.h"
#include "compiler/passes/graph_edit.h"
#include "compiler/passes/passes.h"

namespace kiln {

namespace {

const OpDef& def_of(const Node& n) { return *OpRegistry::get().find(n.op); }

std::vector<int64_t> permutation_of(const Node& n) {
  const auto& perm = def_of(n).algebra.permutation;
  return perm ? perm(n) : std::vector<int64_t>{};
}

// c (rank <= perm's, broadcast against T_p(x)) as the operand that gives the
// same result against x: its axes moved by the inverse permutation. A reshape
// when only size-1 axes move (no data moves), else a transpose.
NodeId laid_out_for_source(GraphBuilder& b, const Graph& g, NodeId c, const std::vector<int64_t>& perm) {
  const Shape& s = g.node(c).type.shape;
  const size_t rank = perm.size();
  if (s.empty()) return c;  // a scalar broadcasts the same either way
  Shape full(rank - s.size(), 1);
  full.insert(full.end(), s.begin(), s.end());
  Shape moved(rank);
  std::vector<int64_t> inverse(rank);
  for (size_t k = 0; k < rank; ++k) {
    moved[static_cast<size_t>(perm[k])] = full[k];
    inverse[static_cast<size_t>(perm[k])] = static_cast<int64_t>(k);
  }
  // Do the axes longer than 1 keep their order? Then it is the same bytes.
  std::vector<size_t> order;
  for (size_t k = 0; k < rank; ++k)
    if (full[k] != 1) order.push_back(static_cast<size_t>(perm[k]));
  // Leading 1s dropped: broadcasting aligns trailing axes, and a bias of
  // shape [C] (not [1,1,1,C]) is what a GEMM epilogue takes as a bias.
  Shape trimmed(std::find_if(moved.begin(), moved.end(), [](int64_t d) { return d != 1; }), moved.end());
  if (std::is_sorted(order.begin(), order.end()))
    return trimmed == s ? c : b.add("reshape", {c}, {{"shape", trimmed}});
  const NodeId expanded = full.size() == s.size() ? c : b.add("reshape", {c}, {{"shape", full}});
  const NodeId moved_axes = b.add("transpose", {expanded}, {{"perm", inverse}});
  return trimmed.size() == moved.size() ? moved_axes : b.add("reshape", {moved_axes}, {{"shape", trimmed}});
}

// Does anything but `user` and permutations (which compose with it) read t?
// Then t stays for it, and moving a copy below `user` would add a transpose.
bool read_elsewhere(const Graph& g, NodeId t, NodeId user) {
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (static_cast<NodeId>(i) == user) continue;
    const Node& n = g.nodes[i];
    if (std::find(n.inputs.begin(), n.inputs.end(), t) != n.inputs.end() && permutation_of(n).empty()) return true;
  }
  return handed_out(g, t);
}

// A reduction of T_p(x) over axes A (OpAlgebra::reduced_axes) as the
// reduction of x over p[A], then the permutation of the kept axes on the
// smaller result: a reshape when they keep their order (no data moves), else
// a transpose. A channels-first model's global average pool then reads the
// channels-last activations instead of a transposed copy of them.
NodeId reduce_before_permutation(GraphBuilder& b, const Graph& g, const Node& n, const std::vector<int64_t>& perm) {
  const NodeId x = g.node(n.inputs[0]).inputs[0];
  const int rank = static_cast<int>(perm.size());
  const std::vector<int> axes = def_of(n).algebra.reduced_axes(n, rank);
  const bool keep = n.attrs.value("keepdims", false);
  std::vector<int64_t> source_axes;
  for (int a : axes) source_axes.push_back(perm[static_cast<size_t>(a)]);
  std::sort(source_axes.begin(), source_axes.end());
  Attrs attrs = n.attrs;
  attrs["axes"] = source_axes;
  const NodeId inner = b.add(n.op, {x}, attrs);
  // The result's axes in order, as axes of x; then as positions in the inner result.
  std::vector<int64_t> kept_source, order;
  for (int k = 0; k < rank; ++k)
    if (keep || std::find(axes.begin(), axes.end(), k) == axes.end()) kept_source.push_back(perm[static_cast<size_t>(k)]);
  for (int64_t s : kept_source) {
    int64_t position = 0;
    for (int64_t t : kept_source) position += t < s;
    order.push_back(position);
  }
  // Reduced axes kept as 1 move no data: only the others' order counts.
  std::vector<int64_t> moving;
  for (size_t k = 0; k < kept_source.size(); ++k)
    if (g.node(x).type.shape[static_cast<size_t>(kept_source[k])] != 1 &&
        !(keep && std::binary_search(source_axes.begin(), source_axes.end(), kept_source[k])))
      moving.push_back(kept_source[k]);
  if (std::is_sorted(moving.begin(), moving.end()))
    return b.type(inner).shape == n.type.shape ? inner : b.add("reshape", {inner}, {{"shape", n.type.shape}});
  return b.add("transpose", {inner}, {{"perm", order}});
}

}  // namespace

bool sink_transposes(Graph& g) {
  const auto param_only = param_only_nodes(g);
  GraphBuilder b(g);
  bool changed = false;
  const size_t count = g.nodes.size();
  for (size_t i = 0; i < count; ++i) {
    const Node n = g.nodes[i];  // a copy: adding nodes moves the node list
    if (def_of(n).algebra.reduced_axes && n.inputs.size() == 1) {
      const auto perm = permutation_of(g.node(n.inputs[0]));
      if (perm.size() < 2 || read_elsewhere(g, n.inputs[0], static_cast<NodeId>(i))) continue;
      b.set_origin(n.origin);
      replace_uses(g, static_cast<NodeId>(i), reduce_before_permutation(b, g, n, perm));
      changed = true;
      continue;
    }
    if (def_of(n).pattern != OpPattern::elementwise || n.inputs.empty()) continue;
    const size_t rank = static_cast<size_t>(n.type.rank());
    std::vector<int64_t> perm;
    bool ok = rank >= 2;
    for (NodeId in : n.inputs) {
      const Node& operand = g.node(in);
      auto p = permutation_of(operand);
      if (!p.empty() && p.size() == rank) {
        if (perm.empty()) perm = p;
        ok = ok && p == perm;
      } else {
        // Anything else must be cheap to lay out again: one element, or
        // computed from params and constants alone (once per parameter load
        // in inference; a bias or a scale, small beside the activations).
        const bool one = numel(operand.type.shape) == 1;
        const bool fixed = static_cast<size_t>(in) < param_only.size() && param_only[static_cast<size_t>(in)];
        ok = ok && operand.type.rank() <= static_cast<int>(rank) && (one || fixed);
      }
    }
    if (!ok || perm.empty()) continue;
    for (NodeId in : n.inputs)
      if (permutation_of(g.node(in)).size() == rank && read_elsewhere(g, in, static_cast<NodeId>(i))) ok = false;
    if (!ok) continue;
    b.set_origin(n.origin);
    std::vector<NodeId> inputs;
    for (NodeId in : n.inputs) {
      const Node& operand = g.node(in);
      inputs.push_back(permutation_of(operand).size() == rank ? operand.inputs[0]
                                                              : laid_out_for_source(b, g, in, perm));
    }
    const NodeId inner = b.add(n.op, inputs, n.attrs);
    const NodeId moved = b.add("transpose", {inner}, {{"perm", perm}});
    replace_uses(g, static_cast<NodeId>(i), moved);
    changed = true;
  }
  b.set_origin("");
  if (changed) settle_appended_replacements(g);
  return changed;
}

}  // namespace kiln
