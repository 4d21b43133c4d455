#pragma once
// The converter interface: one function per ONNX op type, registered by
// family (convert_*.cpp), that reads a node through a NodeCtx and emits kiln
// nodes. Converters never see protobuf lists or the JSON being written; they
// ask for inputs (a kiln node, or a value known at import), attributes (every
// attribute a converter does not read is reported as unsupported, so nothing
// is silently ignored) and emit kiln ops by name with kiln attributes.
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "compiler/frontend/onnx/onnx_import.h"
#include "compiler/interp/interpreter.h"
#include "compiler/ir/types.h"
#include "onnx/onnx_pb.h"

namespace kiln::onnx {

// A problem with the node being converted; kind "unsupported" or "invalid".
struct ConvertError : std::runtime_error {
  ConvertError(std::string kind, const std::string& reason) : std::runtime_error(reason), kind(std::move(kind)) {}
  std::string kind;
};
[[noreturn]] void unsupported(const std::string& reason);
[[noreturn]] void invalid(const std::string& reason);

class Importer;

class NodeCtx {
 public:
  NodeCtx(Importer& im, const ::onnx::NodeProto& node, int64_t opset) : im_(im), node_(node), opset_(opset) {}

  const ::onnx::NodeProto& node() const { return node_; }
  int64_t opset() const { return opset_; }
  const std::string& name() const;  // the node's name, else its first output

  // Inputs. An absent optional input (missing, or named "") is !has(i).
  int inputs() const { return node_.input_size(); }
  bool has(int i) const { return i < node_.input_size() && !node_.input(i).empty(); }
  // The kiln node holding input i (a value known at import gets a constant or param node).
  std::string in(int i);
  TensorType type(int i) const;
  const Shape& shape(int i) const;
  int rank(int i) const { return static_cast<int>(shape(i).size()); }
  DType dtype(int i) const { return type(i).dtype; }
  // The value of input i where it is known at import (constants, folded shape
  // arithmetic, integer initializers, bound graph inputs), else nullptr.
  const interp::Value* known(int i) const;
  // Input i must be known at import (a shape, axes, pads): its value, or a
  // ConvertError saying so (and, for a graph input, that it must be bound).
  const interp::Value& need_known(int i, const std::string& what);
  std::vector<int64_t> need_ints(int i, const std::string& what);

  // Attributes: reading one marks it handled.
  bool has_attr(const std::string& a) const;
  int64_t attr_int(const std::string& a, int64_t fallback);
  int64_t attr_int(const std::string& a);  // required
  double attr_float(const std::string& a, double fallback);
  std::string attr_string(const std::string& a, const std::string& fallback);
  std::vector<int64_t> attr_ints(const std::string& a, std::vector<int64_t> fallback = {});
  std::vector<double> attr_floats(const std::string& a, std::vector<double> fallback = {});
  std::vector<std::string> attr_strings(const std::string& a);
  std::optional<interp::Value> attr_tensor(const std::string& a);
  // An attribute that only matters where it has its default (e.g. a layout
  // hint): accepted when equal, unsupported otherwise.
  void expect_attr_int(const std::string& a, int64_t only);
  std::vector<std::string> unread_attrs() const;

  // Emits a kiln op node; returns its name. `inputs` are kiln node names.
  std::string emit(const std::string& op, const std::vector<std::string>& inputs,
                   nlohmann::json attrs = nlohmann::json::object());
  // The same, named after ONNX output i and bound to it: the node that gives it its value.
  std::string emit_out(int i, const std::string& op, const std::vector<std::string>& inputs,
                       nlohmann::json attrs = nlohmann::json::object());
  std::string scalar(double v, DType dtype = DType::f32);  // a rank-0 constant
  std::string constant(const interp::Value& v);
  TensorType kiln_type(const std::string& kiln_node) const;
  // Binds ONNX output i to a kiln node (or to a value known at import).
  void out(int i, const std::string& kiln_node);
  void out_known(int i, interp::Value v);
  int outputs() const { return node_.output_size(); }
  bool wants(int i) const { return i < node_.output_size() && !node_.output(i).empty(); }

  // Input i is a float initializer (a param of the kiln graph).
  bool is_param(int i) const;
  // Its param is state (batch norm's running statistics): not trained by the optimizer.
  void mark_state(int i);
  // kiln's autodiff: the kiln nodes of d sum(y) / d x for each x (kiln node names).
  std::vector<std::string> gradient(const std::string& y, const std::vector<std::string>& xs);
  // The kiln node of ONNX value `onnx_name` (a graph input, initializer or earlier output).
  std::string value_node(const std::string& onnx_name);

  // Normalizes a possibly negative axis for a tensor of `rank`; invalid() when out of range.
  static int64_t axis(int64_t a, int64_t rank);

 private:
  const ::onnx::AttributeProto* read_attr(const std::string& a, int type, const char* what);
  std::string emit_named(const std::string& base, const std::string& op, const std::vector<std::string>& inputs,
                         nlohmann::json attrs);
  Importer& im_;
  const ::onnx::NodeProto& node_;
  int64_t opset_;
  std::vector<std::string> read_;
};

using ConvertFn = std::function<void(NodeCtx&)>;
using ConverterTable = std::map<std::string, ConvertFn>;

void register_elementwise(ConverterTable& t);
void register_tensor(ConverterTable& t);
void register_reduce(ConverterTable& t);
void register_nn(ConverterTable& t);
void register_shape_ops(ConverterTable& t);
void register_resize(ConverterTable& t);
void register_index(ConverterTable& t);
void register_rnn(ConverterTable& t);
void register_signal(ConverterTable& t);
const ConverterTable& converters();

// What Shape reads from the open batch dimension: a placeholder that only
// moves (Gather, Concat, Unsqueeze, ...) until a Reshape puts the batch back.
// A node that computes with a value holding it is refused (Importer::convert_node).
constexpr int64_t kBatchSizeAtImport = -(int64_t{1} << 30);

// kMaxKnownElements and kMaxKnownTotal (onnx_import.h) bound the values computed at import.
void check_known_size(const interp::Value& v);
void check_known_count(int64_t count);

// Helpers shared by the families.
DType dtype_of_onnx(int32_t onnx_type);            // throws ConvertError for a dtype kiln lacks
std::string onnx_dtype_name(int32_t onnx_type);
nlohmann::json ints_json(const std::vector<int64_t>& v);
std::vector<int64_t> value_ints(const interp::Value& v);

}  // namespace kiln::onnx
