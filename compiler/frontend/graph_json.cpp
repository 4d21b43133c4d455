#include "compiler/frontend/graph_json.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "compiler/frontend/initializers.h"
#include "compiler/frontend/json_text.h"
#include "compiler/frontend/layers.h"
#include "compiler/frontend/node_sugar.h"
#include "compiler/ir/builder.h"
#include "compiler/ops/registry.h"

namespace kiln {

using json = nlohmann::json;

namespace {

std::string ptr(const std::string& key) { return json_pointer_segment(key); }

// A JSON value quoted in a message, cut short: a message should not repeat a megabyte.
std::string brief(const json& v) {
  std::string s = v.dump();
  return s.size() <= 60 ? s : s.substr(0, 57) + "...";
}

std::string did_you_mean(const std::string& name, const std::vector<std::string>& candidates) {
  std::string hint = closest_name(name, candidates);
  return hint.empty() ? "" : " (did you mean '" + hint + "'?)";
}

const std::vector<std::string> kTopLevelKeys = {"format", "name",    "description", "seed",     "inputs",
                                                "params", "nodes",   "outputs",     "gradients"};
constexpr int64_t kMaxElements = int64_t{1} << 31;  // per tensor (per batch item for open shapes)

// True when one path is the other or lies inside it ("/nodes/2" and "/nodes/2/value").
bool paths_overlap(const std::string& a, const std::string& b) {
  const std::string& s = a.size() <= b.size() ? a : b;
  const std::string& l = a.size() <= b.size() ? b : a;
  return l.compare(0, s.size(), s) == 0 && (l.size() == s.size() || l[s.size()] == '/');
}

// A node's input: by name, or (with no "inputs" key) the JSON node just before it.
struct Ref {
  std::string name;
  long index = -1;  // >= 0: that JSON node, whatever its name
};

class Frontend {
 public:
  Frontend(const JsonText& text, std::string file) : root_(text.root), file_(std::move(file)), b_(g_) {
    for (size_t i = 0; i < text.problems.size(); ++i) {
      Diagnostic d = text.problems[i];
      d.node = owner_name(text.problem_segments[i]);
      settled_.push_back(d.path);
      diags_.push_back(std::move(d));
    }
  }

  Graph run() {
    if (!root_.is_object()) {
      fail("", "", "a graph file holds a JSON object, got " + std::string(root_.type_name()));
      throw GraphError(file_, diags_);
    }
    if (!check_format()) throw GraphError(file_, diags_);
    check_top_keys();
    g_.name = "graph";
    if (root_.contains("name")) {
      if (root_["name"].is_string()) g_.name = root_["name"].get<std::string>();
      else fail("/name", "", "name must be a string, got " + brief(root_["name"]));
    }
    if (root_.contains("description") && !root_["description"].is_string())
      fail("/description", "", "description must be a string");
    if (root_.contains("seed")) {
      if (!root_["seed"].is_number_unsigned()) fail("/seed", "", "seed must be a non-negative integer, got " + brief(root_["seed"]));
      else seed_ = root_["seed"].get<uint64_t>();
    }
    g_.source = root_;
    read_inputs();
    read_params();
    read_nodes();
    read_outputs();
    read_gradients();
    if (!diags_.empty()) {
      sort_in_document_order(diags_, kTopLevelKeys);
      throw GraphError(file_, diags_);
    }
    verify_or_throw(g_, "the frontend");
    return std::move(g_);
  }

 private:
  // Problems inside a value already reported (a non-finite number) are not
  // reported again.
  void fail(std::string path, std::string node, std::string msg) {
    for (auto& s : settled_)
      if (paths_overlap(s, path)) return;
    diags_.push_back({std::move(path), std::move(node), std::move(msg)});
  }

  // Reports an OpError: one diagnostic per faulty attribute, else one at `path`.
  void fail_op(const std::string& path, const std::string& node, const OpError& e) {
    if (e.attr_problems.empty()) return fail(path, node, e.what());
    for (auto& [attr, msg] : e.attr_problems) fail(node_path_ + "/" + ptr(attr), node, msg);
  }

  // The node (or input/param) a JSON location belongs to.
  std::string owner_name(const std::vector<std::string>& seg) const {
    if (seg.size() < 2 || !root_.is_object()) return "";
    if (seg[0] == "inputs" || seg[0] == "params") return seg[1];
    if (seg[0] == "nodes" && root_.contains("nodes") && root_["nodes"].is_array()) {
      size_t i = std::strtoul(seg[1].c_str(), nullptr, 10);
      if (i < root_["nodes"].size()) return node_name(root_["nodes"][i]);
    }
    return "";
  }

  bool check_format() {
    if (!root_.contains("format")) {
      fail("/format", "", std::string("missing \"format\": write \"format\": \"") + kGraphFormat + "\"");
      return false;
    }
    const json& f = root_["format"];
    if (!f.is_string() || f.get<std::string>() != kGraphFormat) {
      fail("/format", "", "unknown format version " + brief(f) + "; this kiln reads \"" + kGraphFormat + "\"");
      return false;
    }
    return true;
  }

  void check_top_keys() {
    for (auto& [k, v] : root_.items()) {
      if (std::find(kTopLevelKeys.begin(), kTopLevelKeys.end(), k) != kTopLevelKeys.end()) continue;
      fail("/" + ptr(k), "", "unknown top-level key '" + k + "'" + did_you_mean(k, kTopLevelKeys));
    }
  }

  bool claim_name(const std::string& name, const std::string& path) {
    if (name.empty()) {
      fail(path, name, "names must not be empty");
      return false;
    }
    auto [it, fresh] = defined_at_.emplace(name, path);
    if (!fresh) {
      fail(path, name, "duplicate name '" + name + "' (first defined at " + it->second + ")");
      return false;
    }
    return true;
  }

  const json* section(const char* key, bool want_array) {
    if (!root_.contains(key)) return nullptr;
    const json& s = root_[key];
    if (want_array ? !s.is_array() : !s.is_object()) {
      fail(std::string("/") + key, "", std::string(key) + " must be a JSON " + (want_array ? "array" : "object"));
      names_incomplete_ = true;  // names it should have declared are not unknown, just unread
      return nullptr;
    }
    return &s;
  }

  bool check_fields(const std::string& path, const std::string& name, const json& obj,
                    const std::vector<std::string>& allowed) {
    if (!obj.is_object()) {
      fail(path, name, "expected an object, got " + brief(obj));
      return false;
    }
    bool ok = true;
    for (auto& [k, v] : obj.items()) {
      if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
      fail(path + "/" + ptr(k), name, "unknown field '" + k + "'" + did_you_mean(k, allowed));
      ok = false;
    }
    return ok;
  }

  // Refuses absurd sizes before anything is allocated for them.
  bool check_size(const std::string& path, const std::string& name, const Shape& s, const char* what) {
    int64_t n = 1;
    for (int64_t d : s) {
      if (d == kOpenDim) continue;
      if (d > kMaxElements || n > kMaxElements / std::max<int64_t>(d, 1)) {
        fail(path, name, std::string(what) + " " + shape_str(s) +
                             " is absurdly large (over 2^31 elements); refusing to allocate it");
        return false;
      }
      n *= d;
    }
    return true;
  }

  void read_inputs() {
    const json* s = section("inputs", false);
    if (!s) return;
    for (auto& [name, spec] : s->items()) {
      std::string path = "/inputs/" + ptr(name);
      node_path_ = path;
      if (!claim_name(name, path) || !check_fields(path, name, spec, {"shape", "dtype", "description"})) continue;
      try {
        Attrs a = Attrs::object();
        if (spec.contains("shape")) a["shape"] = spec["shape"];
        if (spec.contains("dtype")) a["dtype"] = spec["dtype"];
        NodeId id = b_.add("input", {}, a, name);
        if (check_size(path + "/shape", name, g_.node(id).type.shape, "shape")) sym_[name] = id;
      } catch (const OpError& e) {
        fail_op(path + "/shape", name, e);
      }
    }
  }

  void read_params() {
    const json* s = section("params", false);
    if (!s) return;
    for (auto& [name, spec] : s->items()) {
      std::string path = "/params/" + ptr(name);
      node_path_ = path;
      if (!claim_name(name, path) ||
          !check_fields(path, name, spec, {"shape", "dtype", "init", "trainable", "description"}))
        continue;
      Attrs a = Attrs::object();
      for (const char* k : {"shape", "dtype", "trainable"})
        if (spec.contains(k)) a[k] = spec[k];
      bool ok = true;
      try {
        a["init"] = normalize_initializer(spec.contains("init") ? spec["init"] : json("zeros"), param_seed(seed_, name));
      } catch (const OpError& e) {
        fail(path + "/init", name, e.what());
        ok = false;
      }
      if (a.contains("shape") && a["shape"].is_array()) {
        Shape sh;
        for (auto& d : a["shape"])
          if (d.is_number_integer() && !(d.is_number_unsigned() && d.get<uint64_t>() > uint64_t{INT64_MAX}))
            sh.push_back(d.get<int64_t>());
        ok = check_size(path + "/shape", name, sh, "param shape") && ok;
      }
      if (!ok) continue;
      try {
        sym_[name] = b_.add("param", {}, a, name);
      } catch (const OpError& e) {
        fail_op(path + "/shape", name, e);
      }
    }
  }

  static std::string node_name(const json& n) {
    return n.is_object() && n.contains("name") && n["name"].is_string() ? n["name"].get<std::string>() : "";
  }

  // Orders JSON nodes so every node comes after the nodes it reads; reports
  // unknown names and cycles. Returns the indices in build order.
  std::vector<size_t> order_nodes(const json& nodes) {
    std::map<std::string, size_t> index;  // the first node of each name
    for (size_t i = 0; i < nodes.size(); ++i)
      if (std::string n = node_name(nodes[i]); !n.empty()) index.emplace(n, i);
    std::vector<std::string> known;
    for (auto& [k, v] : defined_at_) known.push_back(k);
    std::vector<int> state(nodes.size(), 0);  // 0 new, 1 on the stack, 2 done
    std::vector<size_t> order, stack;
    std::function<void(size_t)> visit = [&](size_t i) {
      state[i] = 1;
      stack.push_back(i);
      for (size_t j = 0; j < refs_[i].size(); ++j) {
        Ref& r = refs_[i][j];
        if (r.index < 0) {
          if (sym_.count(r.name) || (defined_at_.count(r.name) && !index.count(r.name))) continue;  // input or param
          auto it = index.find(r.name);
          if (it == index.end()) {
            if (auto split = split_parts_.find(r.name); split != split_parts_.end())
              fail(node_paths_[i] + "/inputs/" + std::to_string(j), node_name(nodes[i]),
                   "'" + r.name + "' is a split into " + std::to_string(split->second) + " parts: read one of them, '" +
                       r.name + "/0' to '" + r.name + "/" + std::to_string(split->second - 1) + "'");
            else if (!names_incomplete_)
              fail(node_paths_[i] + "/inputs/" + std::to_string(j), node_name(nodes[i]),
                   "unknown input '" + r.name + "'" + did_you_mean(r.name, known));
            poisoned_.insert(i);
            continue;
          }
          r.index = static_cast<long>(it->second);
        }
        size_t k = static_cast<size_t>(r.index);
        if (state[k] == 1) {
          std::string cycle;
          for (auto s = std::find(stack.begin(), stack.end(), k); s != stack.end(); ++s)
            cycle += node_name(nodes[*s]) + " -> ";
          fail(node_paths_[i] + "/inputs" + (nodes[i].contains("inputs") ? "/" + std::to_string(j) : ""),
               node_name(nodes[i]), "cycle: " + cycle + node_name(nodes[k]));
          poisoned_.insert(i);
          continue;
        }
        if (state[k] == 0) visit(k);
      }
      stack.pop_back();
      state[i] = 2;
      order.push_back(i);
    };
    for (size_t i = 0; i < nodes.size(); ++i)
      if (state[i] == 0) visit(i);
    return order;
  }

  void read_nodes() {
    const json* s = section("nodes", true);
    if (!s) return;
    FlatNodes flat = flatten_nodes(*s);
    flat_nodes_ = std::move(flat.nodes);
    node_paths_ = std::move(flat.paths);
    split_parts_ = std::move(flat.split_parts);
    const json& nodes = flat_nodes_;
    refs_.assign(nodes.size(), {});
    built_.assign(nodes.size(), kNoNode);
    // Pass 1: the shape of each node object, its name, and what it reads.
    for (size_t i = 0; i < nodes.size(); ++i) {
      const std::string& path = node_paths_[i];
      const json& n = nodes[i];
      std::string name = node_name(n);
      if (!n.is_object()) {
        fail(path, "", "a node is a JSON object, got " + brief(n));
        poisoned_.insert(i);
        continue;
      }
      if (!n.contains("name")) fail(path + "/name", "", "node has no \"name\"");
      else if (!n["name"].is_string()) fail(path + "/name", "", "name must be a string, got " + brief(n["name"]));
      if (name.empty() || !claim_name(name, path)) poisoned_.insert(i);
      bool has_op = n.contains("op"), has_layer = n.contains("layer");
      if (has_op == has_layer) {
        fail(path, name, has_op ? "a node has either \"op\" or \"layer\", not both" : "node has neither \"op\" nor \"layer\"");
        poisoned_.insert(i);
      } else if (!(has_op ? n["op"] : n["layer"]).is_string()) {
        fail(path + (has_op ? "/op" : "/layer"), name, "must be a string, got " + brief(has_op ? n["op"] : n["layer"]));
        poisoned_.insert(i);
      }
      if (n.contains("inputs")) {
        const json& ins = n["inputs"];
        if (!ins.is_array()) {
          fail(path + "/inputs", name, "inputs must be a list of names, got " + brief(ins));
          poisoned_.insert(i);
        } else {
          for (size_t j = 0; j < ins.size(); ++j) {
            if (ins[j].is_string()) refs_[i].push_back({ins[j].get<std::string>()});
            else {
              fail(path + "/inputs/" + std::to_string(j), name,
                   "an input is a name (string), an inline node (object) or a number, got " + brief(ins[j]));
              poisoned_.insert(i);
            }
          }
        }
      } else if (i > 0 && !reads_no_input(n)) {
        refs_[i].push_back({node_name(nodes[i - 1]), static_cast<long>(i - 1)});  // sequential sugar
      }
    }
    auto order = order_nodes(nodes);
    for (size_t i : order) build_node(i, nodes[i]);
  }

  static Attrs node_attrs(const json& n) {
    Attrs attrs = Attrs::object();
    for (auto& [k, v] : n.items())
      if (k != "name" && k != "op" && k != "layer" && k != "inputs" && k != "description") attrs[k] = v;
    return attrs;
  }

  // Checks what a node says about itself (op or layer, attributes, input
  // count), so these problems are reported even when one of its inputs failed.
  bool check_node_alone(size_t i, const json& n, const std::string& path, const std::string& name) {
    size_t count = refs_[i].size();
    std::string no_inputs = "node has no \"inputs\" and no node before it to read";
    bool ok = true;
    if (n.contains("op")) {
      std::string op = n["op"];
      const OpDef* def = OpRegistry::get().find(op);
      if (!def) {
        if (find_layer(op)) fail(path + "/op", name, "'" + op + "' is a layer, not an op: write \"layer\": \"" + op + "\"");
        else fail(path + "/op", name, "unknown op '" + op + "'" + did_you_mean(op, OpRegistry::get().names()));
        return false;
      }
      if (op == "input" || op == "param") {
        fail(path + "/op", name, "declare " + op + "s under \"" + op + "s\", not as nodes");
        return false;
      }
      try {
        check_attrs(*def, node_attrs(n));
      } catch (const OpError& e) {
        fail_op(path, name, e);
        ok = false;
      }
      if (!def->variadic && count != def->inputs.size()) {
        std::string expected;
        for (auto& in : def->inputs) expected += (expected.empty() ? "" : ", ") + in;
        if (count == 0 && !n.contains("inputs")) fail(path, name, no_inputs);
        else
          fail(path + "/inputs", name, op + " takes " + std::to_string(def->inputs.size()) + " inputs (" + expected +
                                           "), got " + std::to_string(count));
        ok = false;
      }
      return ok;
    }
    std::string layer = n["layer"];
    const LayerDef* def = find_layer(layer);
    if (!def) {
      std::vector<std::string> names;
      for (auto& d : layer_defs()) names.push_back(d.name);
      std::string msg = "unknown layer '" + layer + "'" + did_you_mean(layer, names);
      if (OpRegistry::get().find(layer)) msg += "; '" + layer + "' is an op: write \"op\": \"" + layer + "\"";
      fail(path + "/layer", name, msg);
      return false;
    }
    try {
      check_layer_attrs(*def, node_attrs(n));
    } catch (const OpError& e) {
      fail_op(path, name, e);
      ok = false;
    }
    if (count < 1 || count > static_cast<size_t>(def->max_inputs)) {
      if (count == 0 && !n.contains("inputs")) fail(path, name, no_inputs);
      else if (def->max_inputs == 1) fail(path + "/inputs", name, "a " + layer + " layer reads exactly one input, got " + std::to_string(count));
      else fail(path + "/inputs", name, "a " + layer + " layer reads 1 to " + std::to_string(def->max_inputs) + " inputs, got " + std::to_string(count));
      ok = false;
    }
    return ok;
  }

  void build_node(size_t i, const json& n) {
    const std::string path = node_paths_[i];
    std::string name = node_name(n);
    node_path_ = path;
    if (poisoned_.count(i) || !check_node_alone(i, n, path, name)) {
      poisoned_.insert(i);
      return;
    }
    std::vector<NodeId> in;
    for (const Ref& r : refs_[i]) {
      NodeId id = kNoNode;
      if (r.index >= 0) id = built_[static_cast<size_t>(r.index)];
      else if (auto it = sym_.find(r.name); it != sym_.end()) id = it->second;
      if (id == kNoNode) {  // that input failed and was reported where it failed
        poisoned_.insert(i);
        return;
      }
      in.push_back(id);
    }
    if (NodeId taken = g_.find(name); taken != kNoNode) {
      fail(path + "/name", name, "the name '" + name + "' is taken by a node generated for '" + g_.node(taken).origin +
                                     "'; choose another");
      poisoned_.insert(i);
      return;
    }
    Attrs attrs = node_attrs(n);
    b_.set_origin(name);
    size_t first = g_.nodes.size();
    try {
      NodeId id;
      LayerInfo info{name, "", kNoNode, {}};
      if (n.contains("op")) {
        std::string op = n["op"];
        id = b_.add(op, in, attrs, name);
        info.kind = op;
        for (NodeId x : in)
          if (g_.node(x).op == "param") info.params.push_back(x);
      } else {
        std::string layer = n["layer"];
        const LayerDef* def = find_layer(layer);
        Attrs checked = check_layer_attrs(*def, attrs);
        LayerCtx ctx{b_, name, in[0], checked, seed_, {}, std::vector<NodeId>(in.begin() + 1, in.end())};
        {
          ScopeGuard scope(b_, name);
          id = def->expand(ctx);
        }
        if (static_cast<size_t>(id) >= first && g_.node(id).name != name) {
          if (g_.find(name) != kNoNode) throw OpError("the layer's output cannot take the name '" + name + "'");
          g_.node(id).name = name;
        }
        info.kind = layer;
        info.params = ctx.params;
      }
      bool sane = true;
      for (size_t k = first; k < g_.nodes.size() && sane; ++k)
        sane = check_size(path, name, g_.nodes[k].type.shape, "its result");
      if (!sane) {
        poisoned_.insert(i);
        b_.set_origin("");
        return;
      }
      info.output = id;
      g_.layers.push_back(info);
      sym_[name] = id;
      built_[i] = id;
    } catch (const OpError& e) {
      fail_op(path, name, e);
      poisoned_.insert(i);
    }
    b_.set_origin("");
  }

  void read_outputs() {
    const json* s = section("outputs", false);
    if (!s) {
      if (!root_.contains("outputs")) fail("/outputs", "", "a graph needs \"outputs\" (e.g. {\"logits\": \"y\", \"loss\": \"loss\"})");
      return;
    }
    for (auto& [name, ref] : s->items()) {
      std::string path = "/outputs/" + ptr(name);
      if (!ref.is_string()) {
        fail(path, "", "an output names a node (string), got " + brief(ref));
        continue;
      }
      std::string target = ref;
      auto it = sym_.find(target);
      if (it == sym_.end()) {
        if (defined_at_.count(target) || names_incomplete_) continue;  // that node failed: already reported
        std::vector<std::string> names;
        for (auto& [k, v] : defined_at_) names.push_back(k);
        fail(path, "", "output '" + name + "' names unknown node '" + target + "'" + did_you_mean(target, names));
        continue;
      }
      g_.outputs.push_back({name, it->second});
    }
  }

  void read_gradients() {
    const json* s = section("gradients", false);
    if (!s) return;
    for (auto& [param, ref] : s->items()) {
      std::string path = "/gradients/" + ptr(param);
      auto p = sym_.find(param);
      if (p == sym_.end() || g_.node(p->second).op != "param") {
        bool failed_param = p == sym_.end() && defined_at_.count(param) && defined_at_[param].rfind("/params/", 0) == 0;
        if (failed_param || (p == sym_.end() && names_incomplete_)) continue;  // reported where it failed
        std::vector<std::string> params;
        for (auto& [k, v] : defined_at_)
          if (v.rfind("/params/", 0) == 0) params.push_back(k);
        std::string what = p != sym_.end() ? "'" + param + "' is a " + g_.node(p->second).op + " node, not a param"
                                           : "'" + param + "' is not a param of this graph" + did_you_mean(param, params);
        fail(path, param, what + "; gradients maps param names to the nodes computing their gradients");
        continue;
      }
      if (!ref.is_string()) {
        fail(path, param, "a gradient names a node (string), got " + brief(ref));
        continue;
      }
      std::string target = ref;
      auto d = sym_.find(target);
      if (d == sym_.end()) {
        if (!defined_at_.count(target) && !names_incomplete_)
          fail(path, param, "gradient of '" + param + "' names unknown node '" + target + "'");
        continue;
      }
      const TensorType pt = g_.node(p->second).type, dt = g_.node(d->second).type;
      if (!(pt == dt)) {
        fail(path, param, "gradient of '" + param + "' (" + type_str(pt) + ") is node '" + target + "' of type " + type_str(dt));
        continue;
      }
      g_.gradients[p->second] = d->second;
    }
  }

  const json& root_;
  std::string file_;
  Graph g_;
  GraphBuilder b_;
  uint64_t seed_ = 0;
  std::vector<Diagnostic> diags_;
  std::vector<std::string> settled_;               // paths of problems found while reading the text
  std::string node_path_;                          // where attribute problems of the current entry go
  bool names_incomplete_ = false;                  // a section could not be read: unknown names are not news
  std::map<std::string, std::string> defined_at_;  // name -> JSON path
  std::map<std::string, NodeId> sym_;              // JSON name -> node, for everything built
  std::vector<std::vector<Ref>> refs_;             // per JSON node: what it reads
  json flat_nodes_;                                 // the nodes with inline nodes hoisted before their readers
  std::map<std::string, int64_t> split_parts_;     // split nodes that define parts: name -> part count
  std::vector<std::string> node_paths_;             // each flat node's JSON path in the file
  std::vector<NodeId> built_;                      // per JSON node: its value, kNoNode if it failed
  std::set<size_t> poisoned_;                      // JSON nodes that failed (their users are skipped)
};

}  // namespace

Graph parse_graph(const std::string& text, const std::string& file) {
  JsonText parsed = parse_json_text(text, file);
  return Frontend(parsed, file).run();
}

Graph load_graph(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw GraphError(path, {{"", "", "cannot open the file (" + std::string(std::strerror(errno)) + ")"}});
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_graph(ss.str(), path);
}

}  // namespace kiln
