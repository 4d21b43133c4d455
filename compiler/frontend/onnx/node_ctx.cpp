// NodeCtx: what a converter sees of the node it converts.
#include <algorithm>

#include "compiler/frontend/onnx/importer.h"
#include "compiler/frontend/onnx/onnx_tensor.h"

namespace kiln::onnx {

using json = nlohmann::json;

const std::string& NodeCtx::name() const {
  static const std::string unnamed = "<unnamed>";
  if (!node_.name().empty()) return node_.name();
  return node_.output_size() > 0 ? node_.output(0) : unnamed;
}

void check_known_size(const interp::Value& v) {
  if (v.shape.size() > static_cast<size_t>(kMaxRank))
    unsupported("a value of " + std::to_string(v.shape.size()) + " dimensions computed at import (kiln's limit: " +
                std::to_string(kMaxRank) + ")");
  if (v.size() > kMaxKnownElements)
    unsupported("a value of " + std::to_string(v.size()) + " elements computed at import (kiln's limit: " +
                std::to_string(kMaxKnownElements) + ")");
}

void check_known_count(int64_t count) {
  if (count < 0 || count > kMaxKnownElements)
    unsupported("a value of " + std::to_string(count) + " elements computed at import (kiln's limit: " +
                std::to_string(kMaxKnownElements) + ")");
}

std::string NodeCtx::in(int i) {
  if (!has(i)) invalid("input " + std::to_string(i) + " is required");
  return im_.materialize(node_.input(i));
}

TensorType NodeCtx::type(int i) const {
  if (!has(i)) invalid("input " + std::to_string(i) + " is required");
  OnnxValue& v = im_.value(node_.input(i));
  if (v.known) return {v.known->dtype, v.known->shape};
  return v.type;
}

const Shape& NodeCtx::shape(int i) const {
  if (!has(i)) invalid("input " + std::to_string(i) + " is required");
  OnnxValue& v = im_.value(node_.input(i));
  return v.known ? v.known->shape : v.type.shape;
}

const interp::Value* NodeCtx::known(int i) const {
  if (!has(i)) return nullptr;
  OnnxValue& v = im_.value(node_.input(i));
  return v.known ? &*v.known : nullptr;
}

const interp::Value& NodeCtx::need_known(int i, const std::string& what) {
  if (!has(i)) invalid(what + " (input " + std::to_string(i) + ") is required");
  OnnxValue& v = im_.value(node_.input(i));
  if (v.known) return *v.known;
  if (v.graph_input) {
    im_.note_needs_constant(node_.input(i));
    unsupported(what + " comes from graph input '" + node_.input(i) +
                "': kiln needs it at import (bind it to a value; kiln compiles static shapes)");
  }
  std::string from;
  for (auto& g : v.from_inputs) {
    im_.note_needs_constant(g);
    from += (from.empty() ? "" : ", ") + g;
  }
  unsupported(what + " ('" + node_.input(i) + "') is computed at run time" + (from.empty() ? "" : " from graph input " + from) +
              "; kiln needs it at import");
}

std::vector<int64_t> NodeCtx::need_ints(int i, const std::string& what) {
  const interp::Value& v = need_known(i, what);
  if (is_float(v.dtype)) invalid(what + " must be integers");
  return value_ints(v);
}

namespace {
const ::onnx::AttributeProto* find_attr(const ::onnx::NodeProto& n, const std::string& a) {
  for (const auto& at : n.attribute())
    if (at.name() == a) return &at;
  return nullptr;
}
}  // namespace

bool NodeCtx::has_attr(const std::string& a) const { return find_attr(node_, a) != nullptr; }

// Marks `a` read; its attribute, or nullptr when the node has none; invalid()
// when it has another type.
const ::onnx::AttributeProto* NodeCtx::read_attr(const std::string& a, int type, const char* what) {
  read_.push_back(a);
  auto* at = find_attr(node_, a);
  if (at && at->type() != type) invalid("attribute '" + a + "' must be " + what);
  return at;
}

int64_t NodeCtx::attr_int(const std::string& a, int64_t fallback) {
  auto* at = read_attr(a, ::onnx::AttributeProto::INT, "an int");
  return at ? at->i() : fallback;
}

int64_t NodeCtx::attr_int(const std::string& a) {
  if (!has_attr(a)) invalid("attribute '" + a + "' is required");
  return attr_int(a, 0);
}

double NodeCtx::attr_float(const std::string& a, double fallback) {
  auto* at = read_attr(a, ::onnx::AttributeProto::FLOAT, "a float");
  return at ? at->f() : fallback;
}

std::string NodeCtx::attr_string(const std::string& a, const std::string& fallback) {
  auto* at = read_attr(a, ::onnx::AttributeProto::STRING, "a string");
  return at ? at->s() : fallback;
}

std::vector<int64_t> NodeCtx::attr_ints(const std::string& a, std::vector<int64_t> fallback) {
  auto* at = read_attr(a, ::onnx::AttributeProto::INTS, "a list of ints");
  return at ? std::vector<int64_t>(at->ints().begin(), at->ints().end()) : fallback;
}

std::vector<double> NodeCtx::attr_floats(const std::string& a, std::vector<double> fallback) {
  auto* at = read_attr(a, ::onnx::AttributeProto::FLOATS, "a list of floats");
  return at ? std::vector<double>(at->floats().begin(), at->floats().end()) : fallback;
}

std::vector<std::string> NodeCtx::attr_strings(const std::string& a) {
  auto* at = read_attr(a, ::onnx::AttributeProto::STRINGS, "a list of strings");
  return at ? std::vector<std::string>(at->strings().begin(), at->strings().end()) : std::vector<std::string>{};
}

std::optional<interp::Value> NodeCtx::attr_tensor(const std::string& a) {
  auto* at = read_attr(a, ::onnx::AttributeProto::TENSOR, "a tensor");
  if (!at) return std::nullopt;
  return value_of_tensor(at->t(), "attribute '" + a + "'");
}

void NodeCtx::expect_attr_int(const std::string& a, int64_t only) {
  int64_t v = attr_int(a, only);
  if (v != only) unsupported("attribute " + a + "=" + std::to_string(v) + " (kiln supports " + std::to_string(only) + ")");
}

std::vector<std::string> NodeCtx::unread_attrs() const {
  std::vector<std::string> out;
  for (const auto& at : node_.attribute())
    if (std::find(read_.begin(), read_.end(), at.name()) == read_.end()) out.push_back(at.name());
  return out;
}

std::string NodeCtx::emit(const std::string& op, const std::vector<std::string>& inputs, json attrs) {
  std::string base = (node_.output_size() > 0 && !node_.output(0).empty() ? node_.output(0) : name()) + "/" + op;
  return emit_named(base, op, inputs, std::move(attrs));
}

std::string NodeCtx::emit_out(int i, const std::string& op, const std::vector<std::string>& inputs, json attrs) {
  if (!wants(i)) return emit(op, inputs, std::move(attrs));
  std::string n = emit_named(node_.output(i), op, inputs, std::move(attrs));
  out(i, n);
  return n;
}

std::string NodeCtx::emit_named(const std::string& base, const std::string& op, const std::vector<std::string>& inputs,
                                json attrs) {
  std::string description = "ONNX " + node_.op_type() + " node '" + name() + "'";
  if (!node_.doc_string().empty()) description += ": " + node_.doc_string().substr(0, 200);
  return im_.emit(op, inputs, std::move(attrs), base, description);
}

std::string NodeCtx::scalar(double v, DType dtype) {
  return im_.constant_node(interp::Value{dtype, {}, {v}}, (node_.output_size() > 0 ? node_.output(0) : name()) + "/c");
}

std::string NodeCtx::constant(const interp::Value& v) {
  check_known_size(v);
  return im_.constant_node(v, (node_.output_size() > 0 ? node_.output(0) : name()) + "/c");
}

TensorType NodeCtx::kiln_type(const std::string& kiln_node) const { return im_.kiln_type(kiln_node); }

void NodeCtx::out(int i, const std::string& kiln_node) {
  if (!wants(i)) return;
  OnnxValue& v = im_.value(node_.output(i));
  v.kiln = kiln_node;
  v.type = im_.kiln_type(kiln_node);
}

void NodeCtx::out_known(int i, interp::Value value) {
  if (!wants(i)) return;
  check_known_size(value);
  im_.count_known(value.size());
  OnnxValue& v = im_.value(node_.output(i));
  v.type = {value.dtype, value.shape};
  v.known = std::move(value);
  v.foldable = true;
}

std::vector<std::string> NodeCtx::gradient(const std::string& y, const std::vector<std::string>& xs) {
  return im_.gradient(y, xs);
}

bool NodeCtx::is_param(int i) const {
  if (!has(i)) return false;
  const OnnxValue& v = im_.value(node_.input(i));
  return v.known && !v.foldable && is_float(v.known->dtype);
}

void NodeCtx::mark_state(int i) { im_.mark_state(im_.materialize(node_.input(i))); }

std::string NodeCtx::value_node(const std::string& onnx_name) { return im_.materialize(onnx_name); }

int64_t NodeCtx::axis(int64_t a, int64_t rank) {
  if (a < -rank || a >= rank)
    invalid("axis " + std::to_string(a) + " is out of range for rank " + std::to_string(rank));
  return a < 0 ? a + rank : a;
}

}  // namespace kiln::onnx
