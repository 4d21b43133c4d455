// The reference interpreter: walks the graph in topological order, running
// each op's reference kernel from the registry on xtensor arrays of doubles.
#include "compiler/interp/interpreter.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>

#include "compiler/frontend/initializers.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/ops/registry.h"
#include "runtime/init/initializers.h"

namespace kiln::interp {

namespace {

enum class DTypeClass { real, integer, boolean };

DTypeClass class_of(DType t) {
  if (is_float(t)) return DTypeClass::real;
  if (t == DType::boolean) return DTypeClass::boolean;
  return DTypeClass::integer;
}

const char* class_name(DTypeClass c) {
  switch (c) {
    case DTypeClass::real: return "float";
    case DTypeClass::integer: return "integer";
    case DTypeClass::boolean: return "bool";
  }
  return "?";
}

std::string value_type_str(const Value& v) { return type_str(TensorType{v.dtype, v.shape}); }

// Resolves a fetch name: an output name first, then a node name.
NodeId resolve(const Graph& g, const std::string& name) {
  NodeId id = g.output(name);
  if (id == kNoNode) id = g.find(name);
  if (id == kNoNode) {
    std::vector<std::string> candidates;
    for (auto& [out, node] : g.outputs) candidates.push_back(out);
    for (auto& n : g.nodes) candidates.push_back(n.name);
    std::string hint = closest_name(name, candidates);
    throw std::runtime_error("graph '" + g.name + "' has no output or node named '" + name + "'" +
                             (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
  }
  return id;
}

std::vector<std::string> default_fetch(const Graph& g, const std::vector<std::string>& fetch) {
  if (!fetch.empty()) return fetch;
  std::vector<std::string> names;
  for (auto& [out, node] : g.outputs) names.push_back(out);
  return names;
}

// needed[i]: node i is on a path to one of `roots`.
std::vector<bool> needed_nodes(const Graph& g, const std::vector<NodeId>& roots) {
  std::vector<bool> needed(g.nodes.size(), false);
  std::vector<NodeId> stack = roots;
  while (!stack.empty()) {
    NodeId id = stack.back();
    stack.pop_back();
    if (needed[static_cast<size_t>(id)]) continue;
    needed[static_cast<size_t>(id)] = true;
    for (NodeId in : g.node(id).inputs) stack.push_back(in);
  }
  return needed;
}

// Checks a fed value against the declared type of its node, binding the open
// batch dimension on first sight. Errors name the node and the first mismatch.
void check_feed(const Node& n, const Value& v, std::optional<int64_t>& batch, std::string& batch_from) {
  const TensorType& t = n.type;
  std::string where = n.op + " '" + n.name + "': expected " + type_str(t) + ", got " + value_type_str(v);
  if (class_of(v.dtype) != class_of(t.dtype))
    throw std::runtime_error(where + " (" + class_name(class_of(v.dtype)) + " values, expected " +
                             class_name(class_of(t.dtype)) + ")");
  if (v.shape.size() != t.shape.size())
    throw std::runtime_error(where + " (rank " + std::to_string(v.shape.size()) + ", expected " +
                             std::to_string(t.shape.size()) + ")");
  for (size_t i = 0; i < t.shape.size(); ++i) {
    if (v.shape[i] < 0) throw std::runtime_error(where + " (dimension " + std::to_string(i) + " is negative)");
    if (t.shape[i] == kOpenDim) {
      if (!batch) {
        batch = v.shape[i];
        batch_from = n.name;
      } else if (*batch != v.shape[i]) {
        throw std::runtime_error(where + " (batch dimension " + std::to_string(v.shape[i]) + ", but '" + batch_from +
                                 "' was fed a batch of " + std::to_string(*batch) + ")");
      }
    } else if (t.shape[i] != v.shape[i]) {
      throw std::runtime_error(where + " (dimension " + std::to_string(i) + ")");
    }
  }
  if (v.size() != numel(v.shape))
    throw std::runtime_error(n.op + " '" + n.name + "': the value holds " + std::to_string(v.size()) +
                             " numbers but its shape " + shape_str(v.shape) + " needs " +
                             std::to_string(numel(v.shape)));
  if (class_of(t.dtype) == DTypeClass::real) return;
  for (double x : v.data) {
    bool ok = class_of(t.dtype) == DTypeClass::boolean ? (x == 0 || x == 1) : std::trunc(x) == x;
    if (!ok)
      throw std::runtime_error(n.op + " '" + n.name + "': value " + nlohmann::json(x).dump() + " is not a valid " +
                               std::string(dtype_name(t.dtype)));
  }
}

Array to_array(const Value& v) {
  std::vector<size_t> shape(v.shape.begin(), v.shape.end());
  Array a = Array::from_shape(shape);
  std::copy(v.data.begin(), v.data.end(), a.begin());
  return a;
}

Value to_value(const Array& a, DType dtype) {
  Value v;
  v.dtype = dtype;
  for (size_t d : a.shape()) v.shape.push_back(static_cast<int64_t>(d));
  v.data.assign(a.begin(), a.end());
  return v;
}

void round_to_float(Array& a) {
  for (double& x : a) x = static_cast<double>(static_cast<float>(x));
}

}  // namespace

Interpreter::Interpreter(const Graph& g, Precision p) : g_(g), p_(p) {}

std::map<std::string, Value> Interpreter::run(const std::map<std::string, Value>& feeds,
                                              const std::vector<std::string>& fetch) const {
  auto& registry = OpRegistry::get();
  for (auto& [name, v] : feeds) {
    NodeId id = g_.find(name);
    if (id == kNoNode || (g_.node(id).op != "input" && g_.node(id).op != "param"))
      throw std::runtime_error("feed '" + name + "' is not an input or param of graph '" + g_.name + "'");
  }
  std::vector<std::string> names = default_fetch(g_, fetch);
  std::vector<NodeId> roots;
  for (auto& name : names) roots.push_back(resolve(g_, name));
  std::vector<bool> needed = needed_nodes(g_, roots);

  // Check every feed before computing anything; the first open input (in graph order) binds the batch.
  std::optional<int64_t> batch;
  std::string batch_from;
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    const Node& n = g_.nodes[i];
    if (!needed[i] || (n.op != "input" && n.op != "param")) continue;
    auto it = feeds.find(n.name);
    if (it == feeds.end())
      throw std::runtime_error(n.op + " '" + n.name + "' (" + type_str(n.type) + ") is needed but was not fed" +
                               (n.op == "param" ? " (init_params draws every param's initial value)" : ""));
    check_feed(n, it->second, batch, batch_from);
  }

  // Each value is freed after its last use, unless it is fetched.
  std::vector<size_t> last_use(g_.nodes.size(), 0);
  for (size_t i = 0; i < g_.nodes.size(); ++i)
    if (needed[i])
      for (NodeId in : g_.nodes[i].inputs) last_use[static_cast<size_t>(in)] = i;
  for (NodeId root : roots) last_use[static_cast<size_t>(root)] = g_.nodes.size();

  std::vector<Array> values(g_.nodes.size());
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    if (!needed[i]) continue;
    const Node& n = g_.nodes[i];
    if (n.op == "input" || n.op == "param") {
      values[i] = to_array(feeds.at(n.name));
    } else {
      const OpDef* def = registry.find(n.op);
      if (!def || !def->reference)
        throw std::runtime_error("node '" + n.name + "': op '" + n.op + "' has no reference kernel");
      RefCtx ctx{n, n.attrs, {}, {}, batch.value_or(-1)};
      for (NodeId in : n.inputs) ctx.in.push_back(&values[static_cast<size_t>(in)]);
      try {
        def->reference(ctx);
        auto expected = ctx.concrete(n.type.shape);  // a kernel that breaks its shape rule is a bug
        if (!std::equal(expected.begin(), expected.end(), ctx.out.shape().begin(), ctx.out.shape().end())) {
          Shape got(ctx.out.shape().begin(), ctx.out.shape().end());
          throw std::logic_error("the reference kernel produced " + shape_str(got) + " for a value of type " +
                                 type_str(n.type));
        }
      } catch (const std::exception& e) {
        throw std::runtime_error("node '" + n.name + "' (" + n.op + "): " + e.what());
      }
      values[i] = std::move(ctx.out);
      for (NodeId in : n.inputs)
        if (last_use[static_cast<size_t>(in)] == i) values[static_cast<size_t>(in)] = Array();
    }
    if (p_ == Precision::f32 && n.type.dtype == DType::f32) round_to_float(values[i]);
  }

  std::map<std::string, Value> result;
  for (size_t k = 0; k < names.size(); ++k)
    result[names[k]] = to_value(values[static_cast<size_t>(roots[k])], g_.node(roots[k]).type.dtype);
  return result;
}

static std::map<std::string, Value> draw_params(const Graph& g, std::optional<uint64_t> graph_seed) {
  std::map<std::string, Value> out;
  for (NodeId id : g.params()) {
    const Node& n = g.node(id);
    nlohmann::json spec = n.attrs.value("init", nlohmann::json{{"kind", "zeros"}});
    if (graph_seed) spec["seed"] = param_seed(*graph_seed, n.name);
    Value v;
    v.dtype = n.type.dtype;
    v.shape = n.type.shape;
    try {
      v.data = init::draw_initial_values(spec, n.type.shape);
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error("param '" + n.name + "': " + e.what());
    }
    if (v.dtype == DType::f32)
      for (double& x : v.data) x = static_cast<double>(static_cast<float>(x));
    else if (class_of(v.dtype) != DTypeClass::real)  // integer and bool state draws whole numbers only
      for (double& x : v.data) x = v.dtype == DType::boolean ? (x != 0) : std::trunc(x);
    out[n.name] = std::move(v);
  }
  return out;
}

std::map<std::string, Value> init_params(const Graph& g) { return draw_params(g, std::nullopt); }

std::map<std::string, Value> init_params(const Graph& g, uint64_t graph_seed) { return draw_params(g, graph_seed); }

std::vector<std::string> inputs_needed(const Graph& g, const std::vector<std::string>& fetch) {
  std::vector<NodeId> roots;
  for (auto& name : default_fetch(g, fetch)) roots.push_back(resolve(g, name));
  std::vector<bool> needed = needed_nodes(g, roots);
  std::vector<std::string> names;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (needed[i] && g.nodes[i].op == "input") names.push_back(g.nodes[i].name);
  return names;
}

}  // namespace kiln::interp
