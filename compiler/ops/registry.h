#pragma once
// The op registry: one OpDef per op. Each op family's file under compiler/ops/
// fills in its ops' attributes, shape rule, gradient rule, reference kernel and
// lowering, so everything an op means lives in one place.
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "compiler/ir/graph.h"

namespace kiln {

class GraphBuilder;
namespace interp { struct RefCtx; }
namespace lower { struct LowerCtx; }

// A problem with one op application (bad attribute, mismatched shapes, ...).
// The frontend adds the JSON path and node name.
struct OpError : std::runtime_error {
  using std::runtime_error::runtime_error;
  // When attributes are at fault: one (attribute, problem) per fault, so each
  // can be reported at its own JSON path.
  std::vector<std::pair<std::string, std::string>> attr_problems;
};

enum class AttrKind { Int, Float, Bool, String, IntList, FloatList, Shape, Tensor, Enum, Object };
std::string_view attr_kind_name(AttrKind k);

struct AttrSpec {
  std::string name;
  AttrKind kind;
  bool required = false;
  nlohmann::json default_value = nullptr;  // used when absent and not required
  std::string doc;
  std::vector<std::string> choices = {};   // for Enum
  double min = -1e300, max = 1e300;        // for Int/Float and list elements
};

struct InferCtx {
  std::span<const TensorType> in;
  const Attrs& attrs;  // already checked and defaulted against the AttrSpecs
  int64_t i(const char* name) const { return attrs.at(name).get<int64_t>(); }
  double f(const char* name) const { return attrs.at(name).get<double>(); }
  bool b(const char* name) const { return attrs.at(name).get<bool>(); }
  std::string s(const char* name) const { return attrs.at(name).get<std::string>(); }
  std::vector<int64_t> ints(const char* name) const { return attrs.at(name).get<std::vector<int64_t>>(); }
};

// Gradient rule: builds the vector-Jacobian product as graph nodes.
struct GradCtx {
  GraphBuilder& b;
  NodeId node;                     // the forward node
  const std::vector<NodeId>& x;    // its inputs
  NodeId y;                        // == node
  NodeId dy;                       // cotangent of y
  const Graph& graph() const;
  TensorType type(NodeId id) const;
};

using InferFn = std::function<TensorType(const InferCtx&)>;
using ExpandFn = std::function<NodeId(GraphBuilder&, const std::vector<NodeId>&, const Attrs&)>;
// Returns one cotangent per input, kNoNode where no gradient flows.
using GradFn = std::function<std::vector<NodeId>(GradCtx&)>;
using ReferenceFn = std::function<void(interp::RefCtx&)>;
using LowerFn = std::function<void(lower::LowerCtx&)>;

struct OpDef {
  std::string name;
  std::string family;            // the file it lives in
  std::string summary;
  std::vector<std::string> inputs;
  bool variadic = false;         // inputs is then a single name repeated
  std::vector<AttrSpec> attrs;
  std::string shape_rule;        // for `kiln ops`, written next to the code that implements it
  InferFn infer;                 // primitives
  ExpandFn expand;               // composites: decomposition into other ops
  GradFn grad;                   // primitives that are differentiable
  bool no_grad = false;          // gradient stops here explicitly (argmax, one_hot, compare, ...)
  ReferenceFn reference;         // interp
  LowerFn lower;                 // loop IR
  bool composite() const { return static_cast<bool>(expand); }
};

class OpRegistry {
 public:
  static OpRegistry& get();      // every family registered on first use
  OpDef& add(OpDef def);
  const OpDef* find(std::string_view name) const;
  OpDef* find_mut(std::string_view name);
  const std::vector<OpDef>& all() const { return ops_; }
  std::vector<std::string> names() const;
 private:
  std::vector<OpDef> ops_;
};

// Checks `attrs` against the op's specs and fills in defaults. Throws OpError
// naming the attribute (and listing every problem found).
Attrs check_attrs(const OpDef& def, const Attrs& attrs);
Attrs check_attrs(const std::string& what, const std::vector<AttrSpec>& specs, const Attrs& attrs);

// "Did you mean" for unknown names: the closest candidate within a small edit distance.
std::string closest_name(std::string_view name, const std::vector<std::string>& candidates);

// Shape helpers used by many shape rules.
Shape broadcast_shapes(const Shape& a, const Shape& b);  // throws OpError with both shapes
int normalize_axis(int64_t axis, int rank);              // throws OpError if out of range

// Each family file defines one of these; registry.cpp calls them all.
void register_source_ops(OpRegistry&);
void register_elementwise_ops(OpRegistry&);
void register_matmul_ops(OpRegistry&);
void register_reduce_ops(OpRegistry&);
void register_layout_ops(OpRegistry&);
void register_conv_ops(OpRegistry&);
void register_pool_ops(OpRegistry&);
void register_index_ops(OpRegistry&);
void register_activation_ops(OpRegistry&);
void register_loss_ops(OpRegistry&);
// The other aspects of each family, in the same files.
void register_source_gradients(OpRegistry&);
void register_source_reference(OpRegistry&);
void register_source_lowering(OpRegistry&);
void register_elementwise_gradients(OpRegistry&);
void register_elementwise_reference(OpRegistry&);
void register_elementwise_lowering(OpRegistry&);
void register_matmul_gradients(OpRegistry&);
void register_matmul_reference(OpRegistry&);
void register_matmul_lowering(OpRegistry&);
void register_reduce_gradients(OpRegistry&);
void register_reduce_reference(OpRegistry&);
void register_reduce_lowering(OpRegistry&);
void register_layout_gradients(OpRegistry&);
void register_layout_reference(OpRegistry&);
void register_layout_lowering(OpRegistry&);
void register_conv_gradients(OpRegistry&);
void register_conv_reference(OpRegistry&);
void register_conv_lowering(OpRegistry&);
void register_pool_gradients(OpRegistry&);
void register_pool_reference(OpRegistry&);
void register_pool_lowering(OpRegistry&);
void register_index_gradients(OpRegistry&);
void register_index_reference(OpRegistry&);
void register_index_lowering(OpRegistry&);
void register_activation_gradients(OpRegistry&);
void register_activation_reference(OpRegistry&);
void register_activation_lowering(OpRegistry&);
void register_loss_gradients(OpRegistry&);
void register_loss_reference(OpRegistry&);
void register_loss_lowering(OpRegistry&);

}  // namespace kiln
