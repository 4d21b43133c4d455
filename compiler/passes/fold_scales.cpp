// fold-scales: a contraction's result scaled per output channel by a value
// computed from params alone is the contraction with scaled weights:
// mul(conv(x, W), s) -> conv(x, W * s). Batch norm's inference form after a
// convolution or a dense layer (x * scale + shift) thus becomes the
// convolution of scaled weights plus a shift, which the GEMM applies in its
// epilogue: no normalization pass over the activations.
// A scalar scale of a product moves to the smallest input it is linear in,
// when that is smaller than the product: mul(matmul(q, k^T), 1/sqrt(d)) ->
// matmul(q / sqrt(d), k^T); or through an input as large as the product
// that passes it on to a smaller one (softmax_grad(y, dO V^T) * s ->
// softmax_grad(y, (dO s) V^T)).
#include "compiler/ir/builder.h"
#include "compiler/ops/registry.h"
#include "compiler/passes/graph_edit.h"
#include "compiler/passes/passes.h"

namespace kiln {

namespace {

const OpDef& def_of(const Node& n) { return *OpRegistry::get().find(n.op); }

// A scale placed on `x` (read by nothing else) can travel on to a linear
// input smaller than x within `hops` more moves.
bool scale_reaches_smaller(const Graph& g, const std::vector<std::vector<NodeId>>& users, NodeId x, int hops) {
  if (hops == 0 || users[static_cast<size_t>(x)].size() != 1 || handed_out(g, x)) return false;
  const Node& n = g.node(x);
  const int64_t size = numel(n.type.shape, 64);
  for (int in : def_of(n).algebra.linear_inputs) {
    const NodeId next = n.inputs[static_cast<size_t>(in)];
    const int64_t next_size = numel(g.node(next).type.shape, 64);
    if (next_size < size || (next_size == size && scale_reaches_smaller(g, users, next, hops - 1))) return true;
  }
  return false;
}

}  // namespace

std::vector<bool> param_only_nodes(const Graph& g) {
  std::vector<bool> only(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    const OpDef& def = def_of(n);
    if (n.op == "param" || n.op == "constant") {
      only[i] = true;
      continue;
    }
    if (def.interface || !def.pure || n.inputs.empty()) continue;
    bool all = true;
    for (NodeId in : n.inputs) all = all && only[static_cast<size_t>(in)];
    only[i] = all;
  }
  return only;
}

bool fold_scales_into_weights(Graph& g) {
  const auto only = param_only_nodes(g);
  const auto users = g.users();
  GraphBuilder b(g);
  bool changed = false;
  const size_t count = g.nodes.size();
  for (size_t i = 0; i < count; ++i) {
    if (!def_of(g.nodes[i]).algebra.multiplies || g.nodes[i].inputs.size() != 2) continue;
    for (size_t side = 0; side < 2; ++side) {
      const Node n = g.nodes[i];
      const NodeId c = n.inputs[side], s = n.inputs[1 - side];
      const Node product = g.node(c);  // a copy: adding nodes moves the node list
      const auto& through = def_of(product).algebra.scales_through_input;
      if (users[static_cast<size_t>(c)].size() != 1 || handed_out(g, c)) continue;  // (else both products run)
      // A scalar scale (attention's 1/sqrt(d) after q k^T) goes to the
      // smallest input the product is linear in, when that is smaller than
      // the product: one pass over k, not over the scores.
      if (const TensorType& sc = g.node(s).type;
          numel(sc.shape, 64) == 1 && sc.dtype == product.type.dtype && n.type == product.type) {
        // (an input as large as the product takes the scale when the scale
        // can travel on from it: it too is linear in an input of its own, as
        // softmax's gradient is in dy = dO V^T, whose dO is smaller)
        int smallest = -1;
        const int64_t size_of_product = numel(product.type.shape, 64);
        int64_t least = size_of_product;
        for (int in : def_of(product).algebra.linear_inputs) {
          const NodeId x = product.inputs[static_cast<size_t>(in)];
          const int64_t size = numel(g.node(x).type.shape, 64);
          const bool onward = size == size_of_product && smallest < 0 && scale_reaches_smaller(g, users, x, 4);
          if (size < least || onward) smallest = in, least = size;
        }
        if (smallest < 0) continue;
        b.set_origin(n.origin);
        std::vector<NodeId> inputs = product.inputs;
        NodeId& w = inputs[static_cast<size_t>(smallest)];
        NodeId scale = sc.rank() == 0 ? s : b.add("reshape", {s}, {{"shape", Shape{}}});
        w = b.add("mul", {w, scale}, Attrs::object(), product.name + "/scaled_input");
        replace_uses(g, static_cast<NodeId>(i), b.add(product.op, inputs, product.attrs, product.name + "/scaled"));
        changed = true;
        break;
      }
      const int k = through ? through(product) : -1;
      if (k < 0 || !only[static_cast<size_t>(s)] || only[static_cast<size_t>(c)]) continue;
      // s is one value per output channel (the last axis), broadcast over the rest.
      const Shape& cs = product.type.shape;
      const TensorType st = g.node(s).type;
      const int64_t channels = cs.empty() ? 0 : cs.back();
      if (n.type != product.type || st.dtype != product.type.dtype || numel(st.shape) != channels || st.shape.empty() ||
          st.shape.back() != channels || static_cast<size_t>(st.rank()) > cs.size())
        continue;
      const NodeId w = product.inputs[static_cast<size_t>(k)];
      if (g.node(w).type.shape.empty() || g.node(w).type.shape.back() != channels) continue;
      b.set_origin(n.origin);
      NodeId scale = st.rank() == 1 ? s : b.add("reshape", {s}, {{"shape", Shape{channels}}});
      std::vector<NodeId> inputs = product.inputs;
      inputs[static_cast<size_t>(k)] = b.add2("mul", w, scale);
      NodeId folded = b.add(product.op, inputs, product.attrs);
      replace_uses(g, static_cast<NodeId>(i), folded);
      changed = true;
      break;
    }
  }
  b.set_origin("");
  if (changed) settle_appended_replacements(g);
  return changed;
}

}  // namespace kiln
