#include "compiler/autodiff/update_rule.h"

#include "compiler/frontend/json_text.h"

#include <fstream>
#include <set>
#include <sstream>

#include "compiler/frontend/json_text.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/ir/builder.h"
#include "compiler/ops/registry.h"

namespace kiln {

using nlohmann::json;

namespace {

const std::set<std::string> kReserved = {"param", "grad", "lr", "t"};

// The built-in rules, written in the same language a user writes.
const char* kGd = R"json({"format": "kiln.update/1", "name": "gd",
  "description": "gradient descent: p <- p - lr * g",
  "update": {"nodes": [{"name": "step", "op": "mul", "inputs": ["lr", "grad"]},
                       {"name": "new_param", "op": "sub", "inputs": ["param", "step"]}],
             "outputs": {"param": "new_param"}}})json";

const char* kMomentum = R"json({"format": "kiln.update/1", "name": "momentum",
  "description": "Keras SGD with momentum: v <- momentum * v - lr * g; p <- p + v",
  "hyperparameters": {"momentum": {"default": 0.9}},
  "state": {"velocity": {"init": "zeros"}},
  "update": {"nodes": [{"name": "kept", "op": "mul", "inputs": ["momentum", "velocity"]},
                       {"name": "step", "op": "mul", "inputs": ["lr", "grad"]},
                       {"name": "new_velocity", "op": "sub", "inputs": ["kept", "step"]},
                       {"name": "new_param", "op": "add", "inputs": ["param", "new_velocity"]}],
             "outputs": {"param": "new_param", "velocity": "new_velocity"}}})json";

// Keras Adam: lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t); beta^t = exp(t log beta).
const char* kAdam = R"json({"format": "kiln.update/1", "name": "adam",
  "description": "Adam as Keras computes it (epsilon outside the square root, bias correction folded into lr_t)",
  "hyperparameters": {"beta1": {"default": 0.9}, "beta2": {"default": 0.999}, "epsilon": {"default": 1e-7}},
  "state": {"m": {"init": "zeros"}, "v": {"init": "zeros"}},
  "update": {"nodes": [
      {"name": "beta1_t", "op": "exp", "inputs": [{"op": "mul", "inputs": ["t", {"op": "log", "inputs": ["beta1"]}]}]},
      {"name": "beta2_t", "op": "exp", "inputs": [{"op": "mul", "inputs": ["t", {"op": "log", "inputs": ["beta2"]}]}]},
      {"name": "lr_t", "op": "div", "inputs": [{"op": "mul", "inputs": ["lr", {"op": "sqrt", "inputs": [{"op": "sub", "inputs": [1, "beta2_t"]}]}]},
                                               {"op": "sub", "inputs": [1, "beta1_t"]}]},
      {"name": "new_m", "op": "add", "inputs": [{"op": "mul", "inputs": ["beta1", "m"]},
                                                {"op": "mul", "inputs": [{"op": "sub", "inputs": [1, "beta1"]}, "grad"]}]},
      {"name": "new_v", "op": "add", "inputs": [{"op": "mul", "inputs": ["beta2", "v"]},
                                                {"op": "mul", "inputs": [{"op": "sub", "inputs": [1, "beta2"]}, {"op": "square", "inputs": ["grad"]}]}]},
      {"name": "denominator", "op": "add", "inputs": [{"op": "sqrt", "inputs": ["new_v"]}, "epsilon"]},
      {"name": "step", "op": "div", "inputs": [{"op": "mul", "inputs": ["lr_t", "new_m"]}, "denominator"]},
      {"name": "new_param", "op": "sub", "inputs": ["param", "step"]}],
    "outputs": {"param": "new_param", "m": "new_m", "v": "new_v"}}})json";

// PyTorch SGD: buf <- momentum * buf + (1 - dampening) * g, except that the
// first step takes buf <- g (PyTorch's buffer starts as a copy of the gradient);
// p <- p - lr * buf. first = min(t - 1, 1) is 0 on step 1, 1 after.
const char* kSgd = R"json({"format": "kiln.update/1", "name": "sgd",
  "description": "PyTorch SGD with momentum and dampening (torch.optim.SGD, nesterov=False)",
  "hyperparameters": {"momentum": {"default": 0.9}, "dampening": {"default": 0}},
  "state": {"buf": {"init": "zeros"}},
  "update": {"nodes": [
      {"name": "after_first", "op": "minimum", "inputs": [{"op": "sub", "inputs": ["t", 1]}, 1]},
      {"name": "grad_weight", "op": "sub", "inputs": [1, {"op": "mul", "inputs": ["dampening", "after_first"]}]},
      {"name": "new_buf", "op": "add", "inputs": [{"op": "mul", "inputs": ["momentum", "buf"]},
                                                  {"op": "mul", "inputs": ["grad_weight", "grad"]}]},
      {"name": "new_param", "op": "sub", "inputs": ["param", {"op": "mul", "inputs": ["lr", "new_buf"]}]}],
    "outputs": {"param": "new_param", "buf": "new_buf"}}})json";

// PyTorch SGD with nesterov=True (dampening 0): buf <- momentum * buf + g;
// p <- p - lr * (g + momentum * buf).
const char* kSgdNesterov = R"json({"format": "kiln.update/1", "name": "sgd_nesterov",
  "description": "PyTorch SGD with Nesterov momentum (torch.optim.SGD, nesterov=True)",
  "hyperparameters": {"momentum": {"default": 0.9}},
  "state": {"buf": {"init": "zeros"}},
  "update": {"nodes": [
      {"name": "new_buf", "op": "add", "inputs": [{"op": "mul", "inputs": ["momentum", "buf"]}, "grad"]},
      {"name": "direction", "op": "add", "inputs": ["grad", {"op": "mul", "inputs": ["momentum", "new_buf"]}]},
      {"name": "new_param", "op": "sub", "inputs": ["param", {"op": "mul", "inputs": ["lr", "direction"]}]}],
    "outputs": {"param": "new_param", "buf": "new_buf"}}})json";

// PyTorch Adam/AdamW: bias corrections outside, epsilon added to
// sqrt(v_hat): p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
// AdamW's decoupled weight decay is the trainer's (weight_decay in the spec),
// applied to p before this rule, as PyTorch does.
const char* kAdamW = R"json({"format": "kiln.update/1", "name": "adamw",
  "description": "PyTorch Adam / AdamW (torch.optim.AdamW; with weight_decay 0 it is torch.optim.Adam)",
  "hyperparameters": {"beta1": {"default": 0.9}, "beta2": {"default": 0.999}, "epsilon": {"default": 1e-8}},
  "state": {"m": {"init": "zeros"}, "v": {"init": "zeros"}},
  "update": {"nodes": [
      {"name": "correction1", "op": "sub", "inputs": [1, {"op": "exp", "inputs": [{"op": "mul", "inputs": ["t", {"op": "log", "inputs": ["beta1"]}]}]}]},
      {"name": "correction2", "op": "sub", "inputs": [1, {"op": "exp", "inputs": [{"op": "mul", "inputs": ["t", {"op": "log", "inputs": ["beta2"]}]}]}]},
      {"name": "new_m", "op": "add", "inputs": [{"op": "mul", "inputs": ["beta1", "m"]},
                                                {"op": "mul", "inputs": [{"op": "sub", "inputs": [1, "beta1"]}, "grad"]}]},
      {"name": "new_v", "op": "add", "inputs": [{"op": "mul", "inputs": ["beta2", "v"]},
                                                {"op": "mul", "inputs": [{"op": "sub", "inputs": [1, "beta2"]}, {"op": "square", "inputs": ["grad"]}]}]},
      {"name": "denominator", "op": "add", "inputs": [{"op": "div", "inputs": [{"op": "sqrt", "inputs": ["new_v"]}, {"op": "sqrt", "inputs": ["correction2"]}]}, "epsilon"]},
      {"name": "step_size", "op": "div", "inputs": ["lr", "correction1"]},
      {"name": "new_param", "op": "sub", "inputs": ["param", {"op": "mul", "inputs": ["step_size", {"op": "div", "inputs": ["new_m", "denominator"]}]}]}],
    "outputs": {"param": "new_param", "m": "new_m", "v": "new_v"}}})json";

std::string ptr(const std::string& key) {
  std::string out;
  for (char c : key) out += c == '~' ? "~0" : c == '/' ? "~1" : std::string(1, c);
  return out;
}

// Checks the rule's structure, collecting every problem with its JSON path.
class RuleReader {
 public:
  RuleReader(const json& root, std::string file) : root_(root), file_(std::move(file)) {}

  UpdateRule read() {
    UpdateRule rule;
    rule.source = file_;
    if (!root_.is_object()) throw GraphError(file_, {{"", "", "an update rule is a JSON object"}});
    if (root_.value("format", json()) != kUpdateFormat)
      fail("/format", "", std::string("\"format\" must be \"") + kUpdateFormat + "\"");
    for (auto& [k, v] : root_.items())
      if (!std::set<std::string>{"format", "name", "description", "hyperparameters", "state", "pre", "update"}.count(k))
        fail("/" + ptr(k), "", "unknown key '" + k + "' (keys: format, name, description, hyperparameters, state, pre, update)");
    if (!root_.contains("name") || !root_["name"].is_string()) fail("/name", "", "the rule needs a \"name\" (string)");
    else rule.name = root_["name"];
    read_hyperparameters(rule);
    read_state(rule);
    if (root_.contains("pre")) read_stage("pre", rule, false);
    if (!root_.contains("update")) fail("/update", "", "the rule needs an \"update\" stage");
    else read_stage("update", rule, true);
    if (!diags_.empty()) throw GraphError(file_, diags_);
    rule.pre = root_.value("pre", json());
    rule.update = root_["update"];
    return rule;
  }

 private:
  void fail(std::string path, std::string node, std::string msg) { diags_.push_back({std::move(path), std::move(node), std::move(msg)}); }

  bool claim(const std::string& name, const std::string& path) {
    if (kReserved.count(name)) { fail(path, name, "'" + name + "' is a reserved name (param, grad, lr, t)"); return false; }
    if (!names_.insert(name).second) { fail(path, name, "'" + name + "' is declared twice"); return false; }
    return true;
  }

  void read_hyperparameters(UpdateRule& rule) {
    if (!root_.contains("hyperparameters")) return;
    const json& h = root_["hyperparameters"];
    if (!h.is_object()) { fail("/hyperparameters", "", "hyperparameters is an object: name -> {\"default\": number}"); return; }
    for (auto& [name, spec] : h.items()) {
      std::string path = "/hyperparameters/" + ptr(name);
      if (!claim(name, path)) continue;
      const json& d = spec.is_object() ? spec.value("default", json()) : spec;
      if (!d.is_number()) { fail(path, name, "a hyperparameter needs a numeric default"); continue; }
      rule.hyperparameters.push_back({name, d.get<double>()});
    }
  }

  void read_state(UpdateRule& rule) {
    if (!root_.contains("state")) return;
    const json& s = root_["state"];
    if (!s.is_object()) { fail("/state", "", "state is an object: name -> {\"init\": \"zeros\" | \"param\"}"); return; }
    for (auto& [name, spec] : s.items()) {
      std::string path = "/state/" + ptr(name);
      if (!claim(name, path)) continue;
      // Read as JSON, then checked: value("init", std::string) throws for a non-string.
      const json init_value = spec.is_object() ? spec.value("init", json("zeros")) : json();
      std::string init = init_value.is_string() ? init_value.get<std::string>() : "";
      if (init != "zeros" && init != "param") { fail(path + "/init", name, "init must be \"zeros\" or \"param\" (a copy of the param)"); continue; }
      rule.state.push_back({name, init});
    }
  }

  void read_node(const json& n, const std::string& path, std::set<std::string>& defined) {
    if (!n.is_object()) { fail(path, "", "a node is an object with \"op\" and \"inputs\""); return; }
    std::string name;
    if (n.contains("name") && n["name"].is_string()) name = n["name"];
    else if (n.contains("name")) fail(path + "/name", "", "a node's name is a string, got " + n["name"].dump());
    if (!n.contains("op") || !n["op"].is_string()) { fail(path + "/op", name, "a node needs an \"op\""); return; }
    std::string op = n["op"];
    if (op == "input" || op == "param" || !OpRegistry::get().find(op)) {
      std::string hint = closest_name(op, OpRegistry::get().names());
      fail(path + "/op", name, "unknown op '" + op + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
    }
    if (n.contains("inputs") && !n["inputs"].is_array()) fail(path + "/inputs", name, "inputs is a list");
    else if (n.contains("inputs"))
      for (size_t i = 0; i < n["inputs"].size(); ++i) {
        const json& in = n["inputs"][i];
        std::string ip = path + "/inputs/" + std::to_string(i);
        if (in.is_object()) read_node(in, ip, defined);  // an anonymous nested node
        else if (in.is_string() && !defined.count(in.get<std::string>()))
          fail(ip, name, "'" + in.get<std::string>() + "' is not defined before this node");
        else if (!in.is_string() && !in.is_number()) fail(ip, name, "an input is a name, a number or a nested node");
      }
    if (!name.empty() && !defined.insert(name).second) fail(path + "/name", name, "'" + name + "' is defined twice");
  }

  void read_stage(const std::string& stage, UpdateRule& rule, bool needs_param) {
    const json& s = root_[stage];
    std::string path = "/" + stage;
    if (!s.is_object() || !s.contains("nodes") || !s["nodes"].is_array() || !s.contains("outputs") || !s["outputs"].is_object()) {
      fail(path, "", "a stage is {\"nodes\": [...], \"outputs\": {\"param\": ..., <state>: ...}}");
      return;
    }
    std::set<std::string> defined = {"param", "lr", "t"};
    if (stage == "update") defined.insert("grad");
    for (auto& [h, v] : rule.hyperparameters) defined.insert(h);
    for (auto& st : rule.state) defined.insert(st.name);
    for (size_t i = 0; i < s["nodes"].size(); ++i) {
      const json& n = s["nodes"][i];
      if (n.is_object() && !n.contains("name"))  // read_node reports a name that is not a string
        fail(path + "/nodes/" + std::to_string(i), "", "a top-level node needs a \"name\"");
      read_node(n, path + "/nodes/" + std::to_string(i), defined);
    }
    std::set<std::string> targets = {"param"};
    for (auto& st : rule.state) targets.insert(st.name);
    for (auto& [target, ref] : s["outputs"].items()) {
      std::string op = path + "/outputs/" + ptr(target);
      if (!targets.count(target)) fail(op, target, "'" + target + "' is neither \"param\" nor a declared state");
      if (!ref.is_string() || !defined.count(ref.get<std::string>())) fail(op, target, "an output names a node of the stage");
    }
    if (needs_param && !s["outputs"].contains("param")) fail(path + "/outputs", "", "the update stage must give \"param\" its new value");
  }

  const json& root_;
  std::string file_;
  std::vector<Diagnostic> diags_;
  std::set<std::string> names_;
};

// Builds one node (and its nested anonymous nodes); returns its id.
NodeId build_node(GraphBuilder& b, const json& n, std::map<std::string, NodeId>& sym, NodeId like) {
  std::vector<NodeId> inputs;
  for (const json& in : n.value("inputs", json::array())) {
    if (in.is_object()) inputs.push_back(build_node(b, in, sym, like));
    else if (in.is_number()) inputs.push_back(b.scalar_like(in.get<double>(), like));
    else inputs.push_back(sym.at(in.get<std::string>()));
  }
  Attrs attrs = Attrs::object();
  for (auto& [k, v] : n.items())
    if (k != "name" && k != "op" && k != "inputs" && k != "description") attrs[k] = v;
  std::string name = n.value("name", std::string());
  std::string full = name.empty() || b.scope().empty() ? name : b.scope() + "/" + name;
  NodeId id = b.add(n["op"], inputs, attrs, full);
  if (!name.empty()) sym[name] = id;
  return id;
}

}  // namespace

std::map<std::string, NodeId> build_update_stage(GraphBuilder& b, const UpdateRule& rule, const std::string& stage,
                                                 const UpdateBindings& in) {
  const json& s = stage == "pre" ? rule.pre : rule.update;
  if (s.is_null()) return {};
  std::map<std::string, NodeId> sym = {{"param", in.param}, {"lr", in.lr}, {"t", in.t}};
  if (in.grad != kNoNode) sym["grad"] = in.grad;
  for (auto& [name, id] : in.state) sym[name] = id;
  for (auto& [name, value] : in.hyperparameters) sym[name] = b.scalar_like(value, in.param);
  for (auto& [name, id] : in.hyperparameter_inputs)
    sym[name] = b.type(id).dtype == b.type(in.param).dtype
                    ? id
                    : b.add("cast", {id}, {{"dtype", std::string(dtype_name(b.type(in.param).dtype))}});
  const json& nodes = s["nodes"];
  for (size_t i = 0; i < nodes.size(); ++i) {
    try {
      build_node(b, nodes[i], sym, in.param);
    } catch (const OpError& e) {
      throw OpError("update rule '" + rule.name + "' (" + rule.source + ") /" + stage + "/nodes/" + std::to_string(i) +
                    " (node '" + nodes[i].value("name", std::string()) + "'): " + e.what());
    }
  }
  std::map<std::string, NodeId> outputs;
  for (auto& [target, ref] : s["outputs"].items()) {
    NodeId id = sym.at(ref.get<std::string>());
    if (!(b.type(id) == b.type(in.param)))
      throw OpError("update rule '" + rule.name + "' (" + rule.source + ") /" + stage + "/outputs/" + target + ": '" +
                    ref.get<std::string>() + "' is " + type_str(b.type(id)) + " but the param is " +
                    type_str(b.type(in.param)));
    outputs[target] = id;
  }
  return outputs;
}

std::map<std::string, double> resolve_hyperparameters(const UpdateRule& rule,
                                                      const std::map<std::string, double>& overrides) {
  std::map<std::string, double> values(rule.hyperparameters.begin(), rule.hyperparameters.end());
  for (auto& [name, v] : overrides) {
    if (!values.count(name)) {
      std::string known;
      for (auto& [h, d] : rule.hyperparameters) known += (known.empty() ? "" : ", ") + h;
      throw std::invalid_argument("optimizer '" + rule.name + "' has no hyperparameter '" + name + "'" +
                                  (known.empty() ? " (it has none)" : " (it has: " + known + ")"));
    }
    values[name] = v;
  }
  return values;
}

UpdateRule parse_update_rule(const std::string& text, const std::string& file) {
  // Syntax errors and out-of-range numbers are located by the shared JSON reader.
  JsonText parsed = parse_json_text(text, file);
  if (!parsed.problems.empty()) throw GraphError(file, parsed.problems);
  json root = std::move(parsed.root);
  UpdateRule rule = RuleReader(root, file).read();
  // Build it once for a small param so type errors surface now, located.
  Graph scratch;
  GraphBuilder b(scratch);
  UpdateBindings bind;
  bind.param = b.param("p", {DType::f32, {2, 3}});
  bind.grad = b.input("g", {DType::f32, {2, 3}});
  bind.lr = b.input("lr", {DType::f32, {}});
  bind.t = b.input("t", {DType::f32, {}});
  bind.hyperparameters = resolve_hyperparameters(rule, {});
  for (auto& st : rule.state) bind.state[st.name] = b.param(st.name, {DType::f32, {2, 3}});
  for (const char* stage : {"pre", "update"}) {
    try {
      build_update_stage(b, rule, stage, bind);
    } catch (const OpError& e) {
      throw GraphError(file, {{"/" + std::string(stage), "", e.what()}});
    }
  }
  return rule;
}

UpdateRule load_update_rule(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw GraphError(path, {{"", "", "cannot open the update rule file"}});
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_update_rule(ss.str(), path);
}

static const std::map<std::string, const char*>& builtin_rules() {
  static const std::map<std::string, const char*> rules = {{"gd", kGd},   {"momentum", kMomentum}, {"adam", kAdam},
                                                           {"sgd", kSgd}, {"sgd_nesterov", kSgdNesterov}, {"adamw", kAdamW}};
  return rules;
}

bool is_builtin_update_rule(const std::string& kind) { return builtin_rules().count(kind) > 0; }

std::string builtin_update_rule_names() {
  std::string out;
  for (auto& [name, text] : builtin_rules()) out += (out.empty() ? "" : ", ") + name;
  return out;
}

UpdateRule builtin_update_rule(const std::string& kind) {
  auto it = builtin_rules().find(kind);
  if (it == builtin_rules().end())
    throw std::invalid_argument("unknown optimizer '" + kind + "' (built in: " + builtin_update_rule_names() +
                                "; or a kiln.update/1 file)");
  const char* text = it->second;
  UpdateRule rule = parse_update_rule(text, "built-in " + kind);
  rule.source = "built-in";
  return rule;
}

}  // namespace kiln
