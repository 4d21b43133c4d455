#pragma once
// GraphBuilder appends type-checked nodes to a Graph. Composite ops are
// expanded into primitives on the spot (named "<scope>/<op>"), so a built graph
// only ever holds primitives.
#include <functional>
#include <string>
#include <vector>

#include "compiler/ir/graph.h"

namespace kiln {

class GraphBuilder {
 public:
  explicit GraphBuilder(Graph& g);

  // Adds `op` applied to `inputs`; checks attributes, infers the type, and for
  // a composite expands it. `name` may be empty (a unique one is made).
  // Throws OpError on any problem; the graph is unchanged then.
  NodeId add(const std::string& op, std::vector<NodeId> inputs, Attrs attrs = Attrs::object(),
             const std::string& name = "");

  NodeId input(const std::string& name, TensorType type);
  // attrs: init (object), trainable (bool), role ("param" | "state").
  NodeId param(const std::string& name, TensorType type, Attrs attrs = Attrs::object());
  NodeId constant(double value, DType dtype = DType::f32);
  NodeId constant_tensor(const std::vector<double>& values, Shape shape, DType dtype = DType::f32);

  // Convenience for gradient rules and composites.
  NodeId add2(const char* op, NodeId a, NodeId b) { return add(op, {a, b}); }
  NodeId add1(const char* op, NodeId a, Attrs attrs = Attrs::object()) { return add(op, {a}, std::move(attrs)); }
  NodeId scalar_like(double value, NodeId like);   // constant with `like`'s dtype, rank 0
  // Sums `g` over the axes broadcasting expanded, so it has `target`'s shape.
  NodeId reduce_to_shape(NodeId g, const Shape& target);
  // How many elements of x lie along `axes`, as a scalar of x's dtype (the
  // open batch dimension's size read at run time).
  NodeId count_along(NodeId x, const std::vector<int>& axes);

  // By value: adding nodes reallocates the node list, so references would dangle.
  TensorType type(NodeId id) const { return g_.node(id).type; }
  Graph& graph() { return g_; }

  std::string unique_name(const std::string& base);
  // Names of new nodes are "<scope>/<op>"; origin is copied into each new node.
  void set_scope(std::string scope) { scope_ = std::move(scope); }
  const std::string& scope() const { return scope_; }
  void set_origin(std::string origin) { origin_ = std::move(origin); }
  const std::string& origin() const { return origin_; }

 private:
  NodeId append(Node n);
  // Runs a composite's expansion (or a primitive's rewrite) as node `name`:
  // its nodes in the op's scope, the result renamed, the graph left as it was
  // on an error. kNoNode when the expansion declines (a rewrite that does not apply).
  using Expansion = std::function<NodeId(GraphBuilder&, const std::vector<NodeId>&, const Attrs&)>;
  NodeId expand(const std::string& op, const Expansion& fn, const std::vector<NodeId>& inputs, const Attrs& attrs,
                const std::string& name);
  Graph& g_;
  std::string scope_, origin_;
  std::map<std::string, int> name_counts_;
};

// RAII scope for a composite expansion or a pass.
class ScopeGuard {
 public:
  ScopeGuard(GraphBuilder& b, const std::string& scope) : b_(b), saved_(b.scope()) { b.set_scope(scope); }
  ~ScopeGuard() { b_.set_scope(saved_); }
 private:
  GraphBuilder& b_;
  std::string saved_;
};

}  // namespace kiln
