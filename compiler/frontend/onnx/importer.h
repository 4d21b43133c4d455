#pragma once
// The importer's state while it walks an ONNX graph: what is known of every
// ONNX value, the kiln graph JSON being written, and a shadow kiln Graph built
// node by node with the same ops, which gives every emitted node its type and
// evaluates (through the reference interpreter) nodes whose inputs are all
// known at import: exporters' shape arithmetic folds away that way.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "compiler/frontend/onnx/convert.h"
#include "compiler/frontend/onnx/onnx_import.h"
#include "compiler/ir/builder.h"
#include "compiler/ir/graph.h"

namespace kiln::onnx {

struct OnnxValue {
  std::string kiln;                    // the kiln node holding it ("" until one is needed)
  TensorType type;
  std::optional<interp::Value> known;  // its value, where known at import
  bool foldable = false;               // known and may be folded into its readers (not a float initializer: that stays a param)
  bool graph_input = false;            // an unbound graph input
  bool failed = false;                 // its node failed: readers fail quietly
  std::set<std::string> from_inputs;   // the unbound graph inputs it is computed from
};

class Importer {
 public:
  explicit Importer(const ImportOptions& opts) : opts_(opts), b_(shadow_) {}
  ImportedModel run(const ::onnx::ModelProto& model, const std::string& file);

  // For NodeCtx.
  OnnxValue& value(const std::string& onnx_name);
  std::string materialize(const std::string& onnx_name);
  std::string emit(const std::string& op, const std::vector<std::string>& inputs, nlohmann::json attrs,
                   const std::string& base_name, const std::string& description);
  std::string constant_node(const interp::Value& v, const std::string& base_name);
  TensorType kiln_type(const std::string& kiln_node) const;
  void note_needs_constant(const std::string& onnx_name) { needs_constant_.insert(onnx_name); }
  void count_known(int64_t elements);  // a value computed at import: refused past kMaxKnownTotal in all
  void mark_state(const std::string& param) {
    if (!params_.contains(param)) return;
    params_[param]["trainable"] = false;
    shadow_.node(ids_.at(param)).attrs["trainable"] = false;
  }
  // kiln's autodiff on the graph so far: the kiln nodes of d sum(y) / d x.
  std::vector<std::string> gradient(const std::string& y, const std::vector<std::string>& xs);

 private:
  void read_initializers(const ::onnx::GraphProto& g);
  void read_inputs(const ::onnx::GraphProto& g);
  void convert_node(const ::onnx::NodeProto& n, int64_t opset);
  bool fold(const ::onnx::NodeProto& n, size_t first_json_node, size_t materialized_count);
  void rollback(size_t first_json_node, size_t materialized_count);
  void write_outputs(const ::onnx::GraphProto& g);
  std::string unique_name(const std::string& base);
  void problem(const ::onnx::NodeProto* n, std::string kind, std::string reason);

  ImportOptions opts_;
  Graph shadow_;
  GraphBuilder b_;
  std::map<std::string, OnnxValue> values_;
  std::map<std::string, NodeId> ids_;  // kiln node name -> shadow node
  std::set<std::string> names_;        // every kiln name handed out
  nlohmann::json nodes_ = nlohmann::json::array(), inputs_ = nlohmann::json::object(),
                 params_ = nlohmann::json::object(), outputs_ = nlohmann::json::object();
  std::map<std::string, interp::Value> param_values_;
  std::vector<std::string> materialized_;  // ONNX values given a constant node, in order (undone by a fold)
  std::vector<ImportProblem> problems_;
  std::set<std::string> needs_constant_;
  int64_t known_total_ = 0;  // elements of every value computed at import so far
};

}  // namespace kiln::onnx
