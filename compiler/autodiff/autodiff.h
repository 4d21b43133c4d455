#pragma once
// Reverse-mode automatic differentiation on the Graph IR. The backward pass is
// built as ordinary graph nodes (appended after the forward ones), so every
// later stage (passes, fusion, lowering) treats it like any other code.
#include <map>
#include <stdexcept>
#include <vector>

#include "compiler/ir/graph.h"

namespace kiln {

// A gradient was needed through a node whose op cannot provide one.
struct AutodiffError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Gradients {
  // For each node differentiated against: the node holding d loss / d node
  // (same type as the node; a zero tensor when the loss does not depend on it).
  std::map<NodeId, NodeId> of;
  // The summed cotangent of every forward node that received one (only nodes
  // on a path from a `wrt` node to the loss do). gradcheck compares a graph's
  // hand-written backward intermediates against these.
  std::map<NodeId, NodeId> cotangents;
};

// Appends to `g` the nodes computing d loss / d w for every w in `wrt`.
// `loss` must be a float scalar. Only nodes lying on a path from some w to the
// loss get a cotangent, so backward work that would only feed other nodes
// (frozen params, inputs) is never built. Cotangents of a node with several
// users are summed. Throws AutodiffError naming the node and op when a
// gradient must flow through an op without a gradient rule. Ops marked
// no_grad (argmax, one_hot, compare, dim_size) stop the gradient: their
// outputs are piecewise constant.
Gradients differentiate(Graph& g, NodeId loss, const std::vector<NodeId>& wrt);

// The params a loss is differentiated against by default: every param with
// role "param" and trainable = true (after the spec's freeze patterns).
std::vector<NodeId> trainable_params(const Graph& g);

}  // namespace kiln
