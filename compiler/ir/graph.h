#pragma once
// The Graph IR: an SSA DAG of tensor values. Each node produces exactly one
// value; nodes are stored in topological order (a node's inputs precede it).
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compiler/ir/types.h"

namespace kiln {

using Attrs = nlohmann::json;  // always a JSON object; printable and hashable
using NodeId = int32_t;
constexpr NodeId kNoNode = -1;

struct Node {
  std::string op;               // a primitive op name (composites are expanded away)
  std::string name;             // unique within the graph
  std::vector<NodeId> inputs;
  Attrs attrs = Attrs::object();
  TensorType type;
  std::string origin;           // the JSON node (or pass) this came from: kernels and errors name it
};

// Sugar layers are remembered for `kiln summary` (a Keras-like table).
struct LayerInfo {
  std::string name;             // the JSON node name
  std::string kind;             // "conv2d", "dense", ... or the op name for plain nodes
  NodeId output = kNoNode;
  std::vector<NodeId> params;
};

struct Graph {
  std::string name;
  std::vector<Node> nodes;
  std::vector<std::pair<std::string, NodeId>> outputs;  // in declaration order
  std::vector<LayerInfo> layers;
  // Hand-written gradients declared by the graph: param node -> node computing dLoss/dParam.
  std::map<NodeId, NodeId> gradients;
  // Training-step graphs: persistent node (param or optimizer state) -> the
  // node computing its value for the next step. Empty for model graphs.
  std::vector<std::pair<NodeId, NodeId>> updates;
  nlohmann::json source = nlohmann::json::object();    // the JSON it was read from, if any

  const Node& node(NodeId id) const { return nodes.at(static_cast<size_t>(id)); }
  Node& node(NodeId id) { return nodes.at(static_cast<size_t>(id)); }
  NodeId find(std::string_view node_name) const;       // kNoNode if absent
  NodeId output(std::string_view output_name) const;   // kNoNode if absent
  std::vector<NodeId> nodes_with_op(std::string_view op) const;
  std::vector<NodeId> params() const { return nodes_with_op("param"); }
  std::vector<NodeId> inputs() const { return nodes_with_op("input"); }
  // Users of each node (computed; the graph stores only use->def edges).
  std::vector<std::vector<NodeId>> users() const;
};

bool is_trainable(const Node& param);
int64_t param_count(const Graph& g, bool trainable_only = false);

// Human-readable listing: one line per node, `%name = op(%a, %b) {attrs} : f32[?,10]`.
std::string print_graph(const Graph& g);
// Graphviz.
std::string print_dot(const Graph& g);

// Structural and type invariants; returns the problems found (empty = valid).
// Re-infers every node's type through the op registry, so a pass that builds
// an ill-typed node is caught right after it runs.
std::vector<std::string> verify(const Graph& g);
// Throws std::runtime_error listing every problem, prefixed by `stage`.
void verify_or_throw(const Graph& g, std::string_view stage);

}  // namespace kiln
