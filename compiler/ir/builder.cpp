#include "compiler/ir/builder.h"

#include "compiler/ops/registry.h"

namespace kiln {

GraphBuilder::GraphBuilder(Graph& g) : g_(g) {
  for (const Node& n : g.nodes) name_counts_[n.name] = 1;
}

std::string GraphBuilder::unique_name(const std::string& base) {
  auto [it, fresh] = name_counts_.try_emplace(base, 1);
  if (fresh) return base;
  for (;;) {
    std::string candidate = base + "_" + std::to_string(it->second++);
    if (name_counts_.try_emplace(candidate, 1).second) return candidate;
  }
}

NodeId GraphBuilder::append(Node n) {
  if (n.origin.empty()) n.origin = origin_.empty() ? n.name : origin_;
  g_.nodes.push_back(std::move(n));
  return static_cast<NodeId>(g_.nodes.size() - 1);
}

NodeId GraphBuilder::add(const std::string& op, std::vector<NodeId> inputs, Attrs attrs, const std::string& name) {
  auto& reg = OpRegistry::get();
  const OpDef* def = reg.find(op);
  if (!def) {
    std::string hint = closest_name(op, reg.names());
    throw OpError("unknown op '" + op + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
  }
  if (!def->variadic && inputs.size() != def->inputs.size()) {
    std::string expected;
    for (auto& i : def->inputs) expected += (expected.empty() ? "" : ", ") + i;
    throw OpError(op + " takes " + std::to_string(def->inputs.size()) + " inputs (" + expected + "), got " +
                  std::to_string(inputs.size()));
  }
  for (NodeId id : inputs)
    if (id < 0 || static_cast<size_t>(id) >= g_.nodes.size()) throw OpError(op + ": input refers to no node");
  for (int k : def->state_inputs) {
    const Node& s = g_.node(inputs.at(static_cast<size_t>(k)));
    if (s.op == "param" && is_trainable(s))
      throw OpError(op + "'s " + def->inputs.at(static_cast<size_t>(k)) + " '" + s.name +
                    "' is a trainable param, but the training step updates it itself: declare it with \"trainable\": false");
  }
  if (attrs.is_null()) attrs = Attrs::object();
  Attrs checked = check_attrs(*def, attrs);

  if (def->composite()) return expand(op, def->expand, inputs, checked, name);
  if (def->rewrite)
    if (NodeId r = expand(op, def->rewrite, inputs, checked, name); r != kNoNode) return r;

  std::vector<TensorType> in;
  in.reserve(inputs.size());
  for (NodeId id : inputs) in.push_back(g_.node(id).type);
  TensorType t = def->infer(InferCtx{in, checked});
  if (t.rank() > kMaxRank)
    throw OpError(op + " gives a result of " + std::to_string(t.rank()) + " dimensions (kiln's limit: " +
                  std::to_string(kMaxRank) + ")");
  Node n;
  n.op = op;
  n.name = name.empty() ? unique_name((scope_.empty() ? "" : scope_ + "/") + op) : unique_name(name);
  n.inputs = std::move(inputs);
  n.attrs = std::move(checked);
  n.type = std::move(t);
  return append(std::move(n));
}

NodeId GraphBuilder::expand(const std::string& op, const Expansion& fn, const std::vector<NodeId>& inputs,
                            const Attrs& attrs, const std::string& name) {
  std::string full = name.empty() ? unique_name((scope_.empty() ? "" : scope_ + "/") + op) : name;
  const bool reserved = name_counts_.try_emplace(full, 1).second || name.empty();
  size_t first_new = g_.nodes.size();
  NodeId result;
  {
    ScopeGuard guard(*this, full);
    std::string saved_origin = origin_;
    if (origin_.empty()) origin_ = full;
    try {
      result = fn(*this, inputs, attrs);
    } catch (...) {
      origin_ = saved_origin;
      g_.nodes.resize(first_new);  // leave the graph as it was
      throw;
    }
    origin_ = saved_origin;
  }
  if (result == kNoNode) {
    if (reserved) name_counts_.erase(full);  // the primitive itself takes the name
    return kNoNode;
  }
  // The expansion's own name goes to the node that computes its result.
  if (!name.empty() && static_cast<size_t>(result) >= first_new) {
    name_counts_.erase(g_.node(result).name);
    g_.node(result).name = name;
  }
  return result;
}

NodeId GraphBuilder::input(const std::string& name, TensorType type) {
  return add("input", {}, {{"shape", type.shape}, {"dtype", dtype_name(type.dtype)}}, name);
}

NodeId GraphBuilder::param(const std::string& name, TensorType type, Attrs attrs) {
  if (attrs.is_null()) attrs = Attrs::object();
  attrs["shape"] = type.shape;
  attrs["dtype"] = dtype_name(type.dtype);
  return add("param", {}, std::move(attrs), name);
}

NodeId GraphBuilder::constant(double value, DType dtype) {
  return add("constant", {}, {{"value", value}, {"shape", Shape{}}, {"dtype", dtype_name(dtype)}});
}

NodeId GraphBuilder::constant_tensor(const std::vector<double>& values, Shape shape, DType dtype) {
  return add("constant", {}, {{"value", values}, {"shape", shape}, {"dtype", dtype_name(dtype)}});
}

NodeId GraphBuilder::scalar_like(double value, NodeId like) { return constant(value, type(like).dtype); }

NodeId GraphBuilder::count_along(NodeId x, const std::vector<int>& axes) {
  const TensorType t = type(x);
  int64_t static_count = 1;
  NodeId count = kNoNode;
  for (int ax : axes) {
    int64_t d = t.shape[static_cast<size_t>(ax)];
    if (d != kOpenDim) {
      static_count *= d;
      continue;
    }
    NodeId n = add("dim_size", {x}, {{"axis", ax}, {"dtype", dtype_name(t.dtype)}});
    count = count == kNoNode ? n : add2("mul", count, n);
  }
  if (static_count != 1 || count == kNoNode) {
    NodeId s = constant(static_cast<double>(static_count), t.dtype);
    count = count == kNoNode ? s : add2("mul", count, s);
  }
  return count;
}

NodeId GraphBuilder::reduce_to_shape(NodeId g, const Shape& target) {
  const Shape s = type(g).shape;
  if (s == target) return g;
  // Broadcasting aligns trailing dims: sum the leading extra dims and the dims that were 1.
  std::vector<int64_t> axes;
  size_t lead = s.size() - target.size();
  for (size_t i = 0; i < s.size(); ++i) {
    if (i < lead) axes.push_back(static_cast<int64_t>(i));
    else if (target[i - lead] == 1 && s[i] != 1) axes.push_back(static_cast<int64_t>(i));
  }
  NodeId r = axes.empty() ? g : add("reduce_sum", {g}, {{"axes", axes}, {"keepdims", true}});
  if (type(r).shape != target) r = add("reshape", {r}, {{"shape", target}});
  return r;
}

}  // namespace kiln

namespace kiln {
const Graph& GradCtx::graph() const { return b.graph(); }
TensorType GradCtx::type(NodeId id) const { return b.type(id); }
}  // namespace kiln
