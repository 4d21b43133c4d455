// The ONNX importer's walk: initializers, graph inputs, nodes in order (each
// through its converter, folded where every input is known), outputs.
#include "compiler/frontend/onnx/importer.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "compiler/autodiff/autodiff.h"
#include "compiler/frontend/onnx/onnx_tensor.h"
#include "compiler/ops/registry.h"
#include "onnx/checker.h"

namespace kiln::onnx {

using json = nlohmann::json;

namespace {

// Ops whose outputs are drawn, not computed: never folded.
bool is_random_op(const std::string& op) {
  return op == "RandomUniformLike" || op == "RandomNormalLike" || op == "Bernoulli" || op == "Multinomial";
}

std::string node_label(const ::onnx::NodeProto& n) {
  if (!n.name().empty()) return n.name();
  return n.output_size() > 0 ? n.output(0) : std::string("<unnamed>");
}

json value_json(const interp::Value& v) {
  if (v.dtype != DType::boolean && !is_float(v.dtype)) return ints_json(value_ints(v));
  json a = json::array();
  for (double x : v.data) {
    if (v.dtype == DType::boolean) a.push_back(x != 0 ? 1 : 0);
    else a.push_back(x);
  }
  return a;
}

}  // namespace

std::string ImportProblem::str() const {
  std::string where = node.empty() ? "" : op + " node '" + node + "': ";
  return where + reason;
}

ImportError::ImportError(std::string f, std::vector<ImportProblem> ps)
    : std::runtime_error([&] {
        std::string msg = f + ": cannot import (" + std::to_string(ps.size()) + " problem" + (ps.size() == 1 ? "" : "s") + ")";
        for (auto& p : ps) msg += "\n  " + p.str();
        return msg;
      }()),
      file(std::move(f)),
      problems(std::move(ps)) {}

OnnxValue& Importer::value(const std::string& onnx_name) {
  auto it = values_.find(onnx_name);
  if (it == values_.end()) invalid("reads '" + onnx_name + "', which no node, input or initializer defines before it");
  return it->second;
}

std::string Importer::unique_name(const std::string& base) {
  std::string name = base.empty() ? "v" : base;
  for (int k = 1; names_.count(name) || shadow_.find(name) != kNoNode; ++k) name = base + "_" + std::to_string(k);
  names_.insert(name);
  return name;
}

TensorType Importer::kiln_type(const std::string& kiln_node) const { return shadow_.node(ids_.at(kiln_node)).type; }

std::string Importer::emit(const std::string& op, const std::vector<std::string>& inputs, json attrs,
                           const std::string& base_name, const std::string& description) {
  std::vector<NodeId> ids;
  for (auto& in : inputs) ids.push_back(ids_.at(in));
  std::string name = unique_name(base_name);
  NodeId id;
  try {
    id = b_.add(op, ids, attrs, name);
  } catch (const OpError& e) {
    unsupported("kiln's " + op + " refuses it: " + e.what());
  }
  ids_[name] = id;
  json n = {{"name", name}, {"op", op}, {"inputs", inputs}};
  for (auto& [k, v] : attrs.items()) n[k] = v;
  if (!description.empty()) n["description"] = description;
  nodes_.push_back(std::move(n));
  return name;
}

// JSON has no NaN or infinity: a constant holding them is written as
// finite / {1, 0} (x/0 gives the infinity or NaN the value had).
std::string Importer::constant_node(const interp::Value& v, const std::string& base_name) {
  json attrs = {{"value", value_json(v)}, {"shape", ints_json(v.shape)}, {"dtype", std::string(dtype_name(v.dtype))}};
  bool finite = true;
  for (double x : v.data) finite = finite && std::isfinite(x);
  if (finite) return emit("constant", {}, attrs, base_name, "");
  interp::Value num = v, den = v;
  for (size_t i = 0; i < v.data.size(); ++i) {
    double x = v.data[i];
    bool f = std::isfinite(x);
    num.data[i] = f ? x : std::isnan(x) ? 0 : (x > 0 ? 1 : -1);
    den.data[i] = f ? 1 : 0;
  }
  std::string n = emit("constant", {}, {{"value", value_json(num)}, {"shape", ints_json(v.shape)}, {"dtype", attrs["dtype"]}},
                       base_name + "/finite", "");
  std::string d = emit("constant", {}, {{"value", value_json(den)}, {"shape", ints_json(v.shape)}, {"dtype", attrs["dtype"]}},
                       base_name + "/divisor", "");
  return emit("div", {n, d}, json::object(), base_name, "a constant with non-finite values");
}

// An initializer that draws values like the imported ones (for training from
// scratch, and for gradient checks): the constant they all are, else a normal
// with their mean and standard deviation. The imported values themselves are
// the params (kiln run --params, a spec's init_from).
json init_like(const interp::Value& v) {
  double lo = INFINITY, hi = -INFINITY, sum = 0, sq = 0;
  for (double x : v.data) lo = std::min(lo, x), hi = std::max(hi, x), sum += x, sq += x * x;
  if (v.data.empty() || !std::isfinite(sum) || lo == hi) {
    double c = v.data.empty() || !std::isfinite(lo) ? 0.0 : lo;
    return c == 0 ? json("zeros") : json{{"kind", "constant"}, {"value", c}};
  }
  double n = static_cast<double>(v.data.size()), mean = sum / n;
  return {{"kind", "normal"}, {"mean", mean}, {"stddev", std::sqrt(std::max(0.0, sq / n - mean * mean))}};
}

// The backward nodes autodiff appends to the shadow graph are written to the
// JSON as they are (primitives with their attributes).
std::vector<std::string> Importer::gradient(const std::string& y, const std::vector<std::string>& xs) {
  std::string loss = y;
  TensorType lt = kiln_type(y);
  if (!is_float(lt.dtype)) invalid("the gradient of a non-float value");
  if (!lt.shape.empty()) loss = emit("reduce_sum", {y}, json::object(), y + "/sum", "the sum of y: Gradient's seed is all ones");
  std::map<NodeId, std::string> written;
  for (auto& [name, id] : ids_) written[id] = name;
  std::vector<NodeId> wrt;
  for (auto& x : xs) wrt.push_back(ids_.at(x));
  size_t before = shadow_.nodes.size();
  Gradients grads;
  try {
    grads = differentiate(shadow_, ids_.at(loss), wrt);
  } catch (const AutodiffError& e) {
    shadow_.nodes.resize(before);
    unsupported(e.what());
  }
  for (size_t i = before; i < shadow_.nodes.size(); ++i) {
    const Node& n = shadow_.nodes[i];
    json j = {{"name", n.name}, {"op", n.op}, {"inputs", json::array()}};
    for (NodeId in : n.inputs) {
      auto w = written.find(in);
      if (w == written.end()) unsupported("the gradient reads '" + shadow_.node(in).name + "', a node inside an expanded op");
      j["inputs"].push_back(w->second);
    }
    for (auto& [k, v] : n.attrs.items()) j[k] = v;
    j["description"] = "kiln autodiff (ONNX Gradient)";
    names_.insert(n.name);
    ids_[n.name] = static_cast<NodeId>(i);
    written[static_cast<NodeId>(i)] = n.name;
    nodes_.push_back(std::move(j));
  }
  std::vector<std::string> out;
  for (NodeId w : wrt) out.push_back(written.at(grads.of.at(w)));
  return out;
}

// The kiln node for an ONNX value known at import: a param for a float
// initializer (so it trains), a constant otherwise.
std::string Importer::materialize(const std::string& onnx_name) {
  OnnxValue& v = value(onnx_name);
  if (!v.kiln.empty()) return v.kiln;
  if (!v.known) invalid("value '" + onnx_name + "' has no kiln node");
  if (v.known->data.empty()) unsupported("value '" + onnx_name + "' has no elements (kiln tensors have no zero-size dimension)");
  if (v.foldable) {
    v.kiln = constant_node(*v.known, onnx_name);
    materialized_.push_back(onnx_name);
    return v.kiln;
  }
  std::string name = unique_name(onnx_name);
  json spec = {{"shape", ints_json(v.known->shape)}, {"dtype", std::string(dtype_name(v.known->dtype))},
               {"init", init_like(*v.known)},
               {"description", "ONNX initializer '" + onnx_name + "' (its value is in the imported params)"}};
  NodeId id = b_.param(name, TensorType{v.known->dtype, v.known->shape});
  ids_[name] = id;
  params_[name] = spec;
  param_values_[name] = *v.known;
  v.kiln = name;
  return name;
}

void Importer::count_known(int64_t elements) {
  known_total_ += elements;
  if (known_total_ > kMaxKnownTotal)
    unsupported("the values computed at import add up to over " + std::to_string(kMaxKnownTotal) +
                " elements (kiln's limit; constants this large belong in initializers)");
}

void Importer::problem(const ::onnx::NodeProto* n, std::string kind, std::string reason) {
  problems_.push_back({n ? node_label(*n) : "", n ? n->op_type() : "", std::move(reason), std::move(kind)});
}

void Importer::read_initializers(const ::onnx::GraphProto& g) {
  for (const auto& t : g.initializer()) {
    OnnxValue v;
    try {
      v.known = value_of_tensor(t, "initializer '" + t.name() + "'");
    } catch (const ConvertError& e) {
      problem(nullptr, e.kind, e.what());
      v.failed = true;
      values_[t.name()] = v;
      continue;
    }
    v.type = {v.known->dtype, v.known->shape};
    v.foldable = !is_float(v.known->dtype);  // weights stay params; integer tables are constants
    values_[t.name()] = std::move(v);
  }
  if (g.sparse_initializer_size() > 0) problem(nullptr, "unsupported", "sparse initializers");
}

void Importer::read_inputs(const ::onnx::GraphProto& g) {
  for (const auto& in : g.input()) {
    if (values_.count(in.name())) continue;  // an initializer listed as an input (IR < 4): its value is its default
    OnnxValue v;
    auto bound = opts_.bind.find(in.name());
    if (bound != opts_.bind.end()) {
      v.known = bound->second;
      v.type = {v.known->dtype, v.known->shape};
      v.foldable = true;
      values_[in.name()] = std::move(v);
      continue;
    }
    try {
      if (!in.type().has_tensor_type()) unsupported("graph input '" + in.name() + "' is not a tensor (sequences, maps and optionals are not supported)");
      const auto& tt = in.type().tensor_type();
      v.type.dtype = dtype_of_onnx(tt.elem_type());
      if (!tt.has_shape()) unsupported("graph input '" + in.name() + "' has no shape (kiln compiles static shapes)");
      bool empty = false;
      for (const auto& d : tt.shape().dim()) empty = empty || (d.has_dim_value() && d.dim_value() == 0);
      if (empty) {  // no elements: its value is known (kiln tensors have no zero-size dimension)
        interp::Value e{v.type.dtype, {}, {}};
        for (const auto& d : tt.shape().dim()) e.shape.push_back(d.has_dim_value() ? d.dim_value() : 0);
        v.type.shape = e.shape;
        v.known = std::move(e);
        v.foldable = true;
        values_[in.name()] = std::move(v);
        continue;
      }
      for (int i = 0; i < tt.shape().dim_size(); ++i) {
        const auto& d = tt.shape().dim(i);
        if (d.has_dim_value()) {
          v.type.shape.push_back(d.dim_value());
        } else if (i == 0 && opts_.symbolic_batch) {
          v.type.shape.push_back(kOpenDim);
        } else {
          unsupported("graph input '" + in.name() + "': dimension " + std::to_string(i) + " is symbolic ('" +
                      d.dim_param() + "'); only the first may be (the batch)");
        }
      }
      int64_t per_item = 1;  // elements per batch item, without overflow
      for (int64_t d : v.type.shape)
        if (d != kOpenDim) per_item = d > (int64_t{1} << 31) / std::max<int64_t>(per_item, 1) ? (int64_t{1} << 31) + 1 : per_item * d;
      if (per_item > (int64_t{1} << 31))
        unsupported("graph input '" + in.name() + "' of shape " + shape_str(v.type.shape) + " is too large (over 2^31 elements)");
      std::string name = unique_name(in.name());
      ids_[name] = b_.input(name, v.type);
      json spec = {{"shape", ints_json(v.type.shape)}, {"dtype", std::string(dtype_name(v.type.dtype))}};
      if (!in.doc_string().empty()) spec["description"] = in.doc_string();
      inputs_[name] = spec;
      v.kiln = name;
      v.graph_input = true;
      v.from_inputs = {in.name()};
    } catch (const ConvertError& e) {
      problem(nullptr, e.kind, e.what());
      v.failed = true;
    } catch (const OpError& e) {
      problem(nullptr, "unsupported", "graph input '" + in.name() + "': " + e.what());
      v.failed = true;
    }
    values_[in.name()] = std::move(v);
  }
}

// Every input known and foldable: the node's outputs are computed now, by the
// reference interpreter over the shadow graph, and its kiln nodes dropped.
bool Importer::fold(const ::onnx::NodeProto& n, size_t first_json_node, size_t materialized_count) {
  std::vector<std::string> fetch;
  std::vector<int> which;
  int64_t elements = 0;
  for (int i = 0; i < n.output_size(); ++i) {
    if (n.output(i).empty()) continue;
    OnnxValue& v = values_.at(n.output(i));
    if (v.known) continue;
    if (v.kiln.empty() || numel(v.type.shape) > kMaxKnownElements || has_open_dim(v.type.shape)) return false;
    elements += numel(v.type.shape);
    fetch.push_back(v.kiln);
    which.push_back(i);
  }
  if (fetch.empty()) return true;
  // Past the budget, what is left runs at run time (the model still imports).
  if (known_total_ + elements > kMaxKnownTotal) return false;
  std::map<std::string, interp::Value> got;
  try {
    got = interp::Interpreter(shadow_).run({}, fetch);
  } catch (const std::exception&) {
    return false;  // leave it to run time (e.g. a kernel the interpreter refuses on these values)
  }
  known_total_ += elements;
  for (size_t k = 0; k < fetch.size(); ++k) {
    OnnxValue& v = values_.at(n.output(which[k]));
    v.known = got.at(fetch[k]);
    v.foldable = true;
    v.kiln.clear();
  }
  rollback(first_json_node, materialized_count);
  return true;
}

// Drops the JSON nodes written since `first_json_node`, and forgets the
// constant nodes given to ONNX values since then (a later reader writes its own).
void Importer::rollback(size_t first_json_node, size_t materialized_count) {
  nodes_.erase(nodes_.begin() + static_cast<std::ptrdiff_t>(first_json_node), nodes_.end());
  for (size_t k = materialized_count; k < materialized_.size(); ++k) values_.at(materialized_[k]).kiln.clear();
  materialized_.resize(materialized_count);
}

void Importer::convert_node(const ::onnx::NodeProto& n, int64_t opset) {
  auto fail_outputs = [&] {
    for (const auto& out : n.output()) values_[out].failed = true;
  };
  // Readers of a failed value fail quietly: the first problem is the one to fix.
  for (const auto& in : n.input())
    if (!in.empty() && values_.count(in) && values_.at(in).failed) return fail_outputs();
  if (n.output_size() == 0) return problem(&n, "invalid", "a node without outputs");
  bool training_domain = n.domain() == "ai.onnx.preview.training";
  std::string key = training_domain ? "training:" + n.op_type() : n.op_type();
  if (!n.domain().empty() && n.domain() != "ai.onnx" && !(training_domain && converters().count(key))) {
    if (training_domain)
      problem(&n, "unsupported", "op " + n.op_type() + " of the training domain (kiln trains with its own optimizers: kiln train)");
    else
      problem(&n, "unsupported", "op " + n.op_type() + " of domain '" + n.domain() + "' (kiln imports the default domain)");
    return fail_outputs();
  }
  auto it = converters().find(key);
  if (it == converters().end()) {
    problem(&n, "unsupported", "op " + n.op_type() + " is not supported");
    return fail_outputs();
  }
  size_t first_json_node = nodes_.size();
  size_t materialized_count = materialized_.size();
  bool all_known = true;
  for (const auto& in : n.input()) {
    if (in.empty()) continue;
    auto v = values_.find(in);
    all_known = all_known && v != values_.end() && v->second.known && v->second.foldable;
  }
  // The batch-size placeholder may move, and reach a Reshape's shape; nothing else.
  static const std::set<std::string> movers = {"Gather", "Concat", "Unsqueeze", "Squeeze", "Slice", "Cast", "Identity", "Reshape", "Flatten"};
  for (int i = 0; i < n.input_size(); ++i) {
    auto v = n.input(i).empty() ? values_.end() : values_.find(n.input(i));
    if (v == values_.end() || !v->second.known) continue;
    const auto& data = v->second.known->data;
    if (std::find(data.begin(), data.end(), static_cast<double>(kBatchSizeAtImport)) == data.end()) continue;
    bool shape_of_reshape = n.op_type() == "Reshape" && i == 1;
    if (!movers.count(n.op_type()) || (n.op_type() == "Reshape" && !shape_of_reshape)) {
      problem(&n, "unsupported", "arithmetic on the run-time batch size (" + n.op_type() + " of a Shape of the open batch dimension)");
      return fail_outputs();
    }
  }
  try {
    for (const auto& out : n.output())
      if (!out.empty() && values_.count(out) && !values_.at(out).failed) invalid("output '" + out + "' is defined twice");
    std::set<std::string> from;
    for (const auto& in : n.input())
      if (!in.empty() && values_.count(in)) from.insert(values_.at(in).from_inputs.begin(), values_.at(in).from_inputs.end());
    for (const auto& out : n.output()) values_[out] = OnnxValue{}, values_[out].from_inputs = from;
    NodeCtx ctx(*this, n, opset);
    it->second(ctx);
    std::vector<std::string> unread = ctx.unread_attrs();
    if (!unread.empty()) {
      std::string list;
      for (auto& a : unread) list += (list.empty() ? "" : ", ") + a;
      unsupported("attribute" + std::string(unread.size() > 1 ? "s " : " ") + list + " not supported");
    }
    for (int i = 0; i < n.output_size(); ++i) {
      if (n.output(i).empty()) continue;
      OnnxValue& v = values_.at(n.output(i));
      if (v.kiln.empty() && !v.known) invalid("output " + std::to_string(i) + " ('" + n.output(i) + "') is not produced");
    }
    if (all_known && n.input_size() > 0 && !is_random_op(n.op_type())) fold(n, first_json_node, materialized_count);
  } catch (const ConvertError& e) {
    rollback(first_json_node, materialized_count);
    problem(&n, e.kind, e.what());
    fail_outputs();
  } catch (const std::exception& e) {
    rollback(first_json_node, materialized_count);
    problem(&n, "unsupported", e.what());
    fail_outputs();
  }
}

void Importer::write_outputs(const ::onnx::GraphProto& g) {
  for (const auto& out : g.output()) {
    auto it = values_.find(out.name());
    if (it == values_.end()) {
      problem(nullptr, "invalid", "graph output '" + out.name() + "' is not defined by any node, input or initializer");
      continue;
    }
    if (it->second.failed) continue;
    const auto* known = it->second.known ? &it->second.known->data : nullptr;
    if (known && std::find(known->begin(), known->end(), static_cast<double>(kBatchSizeAtImport)) != known->end()) {
      problem(nullptr, "unsupported", "graph output '" + out.name() + "' holds the run-time batch size (a Shape of the open dimension)");
      continue;
    }
    try {
      std::string node = it->second.kiln.empty() ? materialize(out.name()) : it->second.kiln;
      outputs_[out.name()] = node;
    } catch (const ConvertError& e) {
      problem(nullptr, e.kind, "graph output '" + out.name() + "': " + e.what());
    } catch (const std::exception& e) {
      problem(nullptr, "invalid", "graph output '" + out.name() + "': " + e.what());
    }
  }
}

ImportedModel Importer::run(const ::onnx::ModelProto& model, const std::string& file) {
  ImportedModel result;
  const ::onnx::GraphProto& g = model.graph();
  for (const auto& os : model.opset_import())
    if (os.domain().empty() || os.domain() == "ai.onnx") result.opset = os.version();
  if (result.opset == 0) {
    std::string domains;
    for (const auto& os : model.opset_import()) domains += (domains.empty() ? "" : ", ") + os.domain();
    problem(nullptr, "unsupported", "the model imports no opset of the default domain (only " + domains + ")");
  }
  if (result.opset > kMaxOpset)
    problem(nullptr, "unsupported", "opset " + std::to_string(result.opset) + " is newer than kiln supports (1-" +
                                        std::to_string(kMaxOpset) + ")");
  if (!problems_.empty()) throw ImportError(file, problems_);
  read_initializers(g);
  read_inputs(g);
  for (const auto& n : g.node()) convert_node(n, result.opset);
  write_outputs(g);
  for (const auto& out : g.output()) result.output_names.push_back(out.name());
  if (!problems_.empty()) {
    ImportError e(file, problems_);
    e.needs_constant.assign(needs_constant_.begin(), needs_constant_.end());
    throw e;
  }
  std::string name = g.name().empty() ? "onnx_model" : g.name();
  json doc = {{"format", "kiln.graph/1"}, {"name", name}};
  std::string description = "Imported from ONNX (" + (model.producer_name().empty() ? std::string("unknown producer") : model.producer_name()) +
                            ", opset " + std::to_string(result.opset) + ")";
  if (!g.doc_string().empty()) description += ": " + g.doc_string();
  doc["description"] = description;
  if (!inputs_.empty()) doc["inputs"] = inputs_;
  if (!params_.empty()) doc["params"] = params_;
  doc["nodes"] = nodes_;
  doc["outputs"] = outputs_;
  result.graph = std::move(doc);
  result.params = std::move(param_values_);
  return result;
}

ImportedModel import_model(const std::string& bytes, const std::string& file, const ImportOptions& opts) {
  ::onnx::ModelProto model;
  if (!model.ParseFromString(bytes)) throw ImportError(file, {{"", "", "not an ONNX model (the protobuf does not parse: truncated or another format)", "invalid"}});
  if (!model.has_graph() || model.ir_version() <= 0)
    throw ImportError(file, {{"", "", "not an ONNX model (no graph or no IR version)", "invalid"}});
  // ONNX's checker stops at its first finding; the importer reports every
  // node it cannot take. The checker's word is reported when the importer
  // finds nothing wrong itself (its findings usually name the same node).
  std::string checker_says;
  try {
    ::onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    checker_says = e.what();
    if (checker_says.size() > 400) checker_says = checker_says.substr(0, 400) + "...";
  }
  Importer im(opts);
  ImportedModel result;
  try {
    result = im.run(model, file);
  } catch (const ImportError&) {
    throw;
  } catch (const std::exception& e) {  // a model too broken to walk
    throw ImportError(file, {{"", "", checker_says.empty() ? std::string(e.what()) : "the ONNX checker refuses the model: " + checker_says, "invalid"}});
  }
  if (!checker_says.empty()) throw ImportError(file, {{"", "", "the ONNX checker refuses the model: " + checker_says, "invalid"}});
  return result;
}

ImportedModel import_file(const std::string& path, const ImportOptions& opts) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ImportError(path, {{"", "", "cannot open the file", "invalid"}});
  std::stringstream ss;
  ss << f.rdbuf();
  return import_model(ss.str(), path, opts);
}

}  // namespace kiln::onnx
