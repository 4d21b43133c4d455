#include "compiler/frontend/graph_json.h"

#include <fstream>
#include <cerrno>
#include <cstring>
#include <functional>
#include <set>
#include <sstream>

#include "compiler/frontend/initializers.h"
#include "compiler/frontend/layers.h"
#include "compiler/ir/builder.h"
#include "compiler/ops/registry.h"

namespace kiln {

using json = nlohmann::json;

std::pair<size_t, size_t> line_column(const std::string& text, size_t byte_offset) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < text.size() && i + 1 < byte_offset; ++i) {
    if (text[i] == '\n') ++line, col = 1;
    else ++col;
  }
  return {line, col};
}

namespace {

// JSON pointer escaping (RFC 6901).
std::string ptr(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

constexpr int64_t kMaxElements = int64_t{1} << 31;  // per tensor (per batch item for open shapes)

class Frontend {
 public:
  Frontend(const json& root, std::string file) : root_(root), file_(std::move(file)), b_(g_) {}

  Graph run() {
    if (!root_.is_object()) {
      fail("", "", "a graph file holds a JSON object, got " + std::string(root_.type_name()));
      throw GraphError(file_, diags_);
    }
    if (!check_format()) throw GraphError(file_, diags_);
    check_top_keys();
    g_.name = root_.value("name", std::string("graph"));
    if (root_.contains("name") && !root_["name"].is_string()) fail("/name", "", "name must be a string");
    if (root_.contains("seed")) {
      if (!root_["seed"].is_number_unsigned()) fail("/seed", "", "seed must be a non-negative integer");
      else seed_ = root_["seed"].get<uint64_t>();
    }
    g_.source = root_;
    read_inputs();
    read_params();
    read_nodes();
    read_outputs();
    read_gradients();
    if (!diags_.empty()) throw GraphError(file_, diags_);
    verify_or_throw(g_, "the frontend");
    return std::move(g_);
  }

 private:
  void fail(std::string path, std::string node, std::string msg) {
    diags_.push_back({std::move(path), std::move(node), std::move(msg)});
  }

  // Reports an OpError: one diagnostic per faulty attribute, else one for the node.
  void fail_op(const std::string& path, const std::string& node, const OpError& e) {
    if (e.attr_problems.empty()) return fail(path, node, e.what());
    for (auto& [attr, msg] : e.attr_problems) fail(path + "/" + ptr(attr), node, msg);
  }

  bool check_format() {
    if (!root_.contains("format")) {
      fail("/format", "", std::string("missing \"format\": write \"format\": \"") + kGraphFormat + "\"");
      return false;
    }
    const json& f = root_["format"];
    if (!f.is_string() || f.get<std::string>() != kGraphFormat) {
      fail("/format", "", "unknown format version " + f.dump() + "; this kiln reads \"" + kGraphFormat + "\"");
      return false;
    }
    return true;
  }

  void check_top_keys() {
    static const std::vector<std::string> known = {"format", "name", "description", "seed", "inputs",
                                                   "params", "nodes", "outputs", "gradients"};
    for (auto& [k, v] : root_.items()) {
      if (std::find(known.begin(), known.end(), k) != known.end()) continue;
      std::string hint = closest_name(k, known);
      fail("/" + ptr(k), "", "unknown top-level key '" + k + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
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
      return nullptr;
    }
    return &s;
  }

  bool check_fields(const std::string& path, const std::string& name, const json& obj,
                    const std::vector<std::string>& allowed) {
    if (!obj.is_object()) {
      fail(path, name, "expected an object, got " + obj.dump());
      return false;
    }
    bool ok = true;
    for (auto& [k, v] : obj.items()) {
      if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
      std::string hint = closest_name(k, allowed);
      fail(path + "/" + ptr(k), name, "unknown field '" + k + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
      ok = false;
    }
    return ok;
  }

  void check_size(const std::string& path, const std::string& name, const Shape& s) {
    int64_t n = 1;
    for (int64_t d : s) {
      if (d == kOpenDim) continue;
      if (d > kMaxElements || n > kMaxElements / std::max<int64_t>(d, 1)) {
        fail(path + "/shape", name, "shape " + shape_str(s) + " is absurdly large (over 2^31 elements); refusing to allocate it");
        return;
      }
      n *= d;
    }
  }

  void read_inputs() {
    const json* s = section("inputs", false);
    if (!s) return;
    for (auto& [name, spec] : s->items()) {
      std::string path = "/inputs/" + ptr(name);
      if (!claim_name(name, path) || !check_fields(path, name, spec, {"shape", "dtype", "description"})) continue;
      try {
        Attrs a = {{"shape", spec.value("shape", json())}};
        if (spec.contains("dtype")) a["dtype"] = spec["dtype"];
        if (a["shape"].is_null()) a.erase("shape");
        NodeId id = b_.add("input", {}, a, name);
        check_size(path, name, g_.node(id).type.shape);
        sym_[name] = id;
      } catch (const OpError& e) {
        fail_op(path, name, e);
      }
    }
  }

  void read_params() {
    const json* s = section("params", false);
    if (!s) return;
    for (auto& [name, spec] : s->items()) {
      std::string path = "/params/" + ptr(name);
      if (!claim_name(name, path) ||
          !check_fields(path, name, spec, {"shape", "dtype", "init", "trainable", "description"}))
        continue;
      try {
        Attrs a = Attrs::object();
        if (spec.contains("shape")) a["shape"] = spec["shape"];
        if (spec.contains("dtype")) a["dtype"] = spec["dtype"];
        if (spec.contains("trainable")) a["trainable"] = spec["trainable"];
        try {
          a["init"] = normalize_initializer(spec.value("init", json("zeros")), param_seed(seed_, name));
        } catch (const OpError& e) {
          fail(path + "/init", name, e.what());
          continue;
        }
        if (a.contains("shape") && a["shape"].is_array()) {
          Shape sh;
          for (auto& d : a["shape"]) if (d.is_number_integer()) sh.push_back(d.get<int64_t>());
          check_size(path, name, sh);
          if (!diags_.empty() && diags_.back().path == path + "/shape") continue;
        }
        sym_[name] = b_.add("param", {}, a, name);
      } catch (const OpError& e) {
        fail_op(path, name, e);
      }
    }
  }

  // Order JSON nodes so every node comes after the nodes it reads; report
  // unknown names and cycles. Returns the indices in build order.
  std::vector<size_t> order_nodes(const json& nodes, std::vector<std::vector<std::string>>& refs) {
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < nodes.size(); ++i) {
      const json& n = nodes[i];
      if (n.is_object() && n.contains("name") && n["name"].is_string()) index.emplace(n["name"].get<std::string>(), i);
    }
    std::vector<int> state(nodes.size(), 0);  // 0 new, 1 on stack, 2 done
    std::vector<size_t> order, stack;
    std::vector<std::string> all_names;
    for (auto& [k, v] : defined_at_) all_names.push_back(k);
    for (auto& [k, v] : index) all_names.push_back(k);
    std::function<void(size_t)> visit = [&](size_t i) {
      state[i] = 1;
      stack.push_back(i);
      for (size_t j = 0; j < refs[i].size(); ++j) {
        const std::string& r = refs[i][j];
        if (sym_.count(r) || defined_at_.count(r) && !index.count(r)) continue;
        auto it = index.find(r);
        if (it == index.end()) {
          std::string hint = closest_name(r, all_names);
          fail("/nodes/" + std::to_string(i) + "/inputs/" + std::to_string(j), node_name(nodes[i]),
               "unknown input '" + r + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
          poisoned_.insert(i);
          continue;
        }
        if (state[it->second] == 1) {
          std::string cycle;
          auto from = std::find(stack.begin(), stack.end(), it->second);
          for (auto k = from; k != stack.end(); ++k) cycle += node_name(nodes[*k]) + " -> ";
          fail("/nodes/" + std::to_string(i), node_name(nodes[i]), "cycle: " + cycle + r);
          poisoned_.insert(i);
          continue;
        }
        if (state[it->second] == 0) visit(it->second);
      }
      stack.pop_back();
      state[i] = 2;
      order.push_back(i);
    };
    for (size_t i = 0; i < nodes.size(); ++i)
      if (state[i] == 0) visit(i);
    return order;
  }

  static std::string node_name(const json& n) {
    return n.is_object() && n.contains("name") && n["name"].is_string() ? n["name"].get<std::string>() : "";
  }

  void read_nodes() {
    const json* s = section("nodes", true);
    if (!s) return;
    const json& nodes = *s;
    // Pass 1: shape of each node object and the names it reads.
    std::vector<std::vector<std::string>> refs(nodes.size());
    std::string previous;
    for (size_t i = 0; i < nodes.size(); ++i) {
      std::string path = "/nodes/" + std::to_string(i);
      const json& n = nodes[i];
      std::string name = node_name(n);
      if (!n.is_object()) { fail(path, "", "a node is a JSON object, got " + n.dump()); poisoned_.insert(i); continue; }
      if (!n.contains("name")) { fail(path + "/name", "", "node has no \"name\""); poisoned_.insert(i); }
      else if (!n["name"].is_string()) { fail(path + "/name", "", "name must be a string"); poisoned_.insert(i); }
      else if (!claim_name(name, path)) poisoned_.insert(i);
      bool has_op = n.contains("op"), has_layer = n.contains("layer");
      if (has_op == has_layer) {
        fail(path, name, has_op ? "a node has either \"op\" or \"layer\", not both" : "node has neither \"op\" nor \"layer\"");
        poisoned_.insert(i);
      } else if (!(has_op ? n["op"] : n["layer"]).is_string()) {
        fail(path + (has_op ? "/op" : "/layer"), name, "must be a string");
        poisoned_.insert(i);
      }
      if (n.contains("inputs")) {
        if (!n["inputs"].is_array()) { fail(path + "/inputs", name, "inputs must be a list of names"); poisoned_.insert(i); }
        else
          for (size_t j = 0; j < n["inputs"].size(); ++j) {
            if (!n["inputs"][j].is_string()) {
              fail(path + "/inputs/" + std::to_string(j), name, "an input is a name (string), got " + n["inputs"][j].dump());
              poisoned_.insert(i);
            } else refs[i].push_back(n["inputs"][j]);
          }
      } else if (!previous.empty()) {
        refs[i].push_back(previous);  // sequential sugar: no "inputs" reads the node before
      }
      previous = name;
    }
    auto order = order_nodes(nodes, refs);
    for (size_t i : order) build_node(i, nodes[i], refs[i]);
  }

  void build_node(size_t i, const json& n, const std::vector<std::string>& refs) {
    std::string path = "/nodes/" + std::to_string(i);
    std::string name = node_name(n);
    if (poisoned_.count(i)) return;
    std::vector<NodeId> in;
    for (auto& r : refs) {
      auto it = sym_.find(r);
      if (it == sym_.end()) { poisoned_.insert(i); return; }  // an input failed: reported there
      in.push_back(it->second);
    }
    Attrs attrs = Attrs::object();
    for (auto& [k, v] : n.items())
      if (k != "name" && k != "op" && k != "layer" && k != "inputs" && k != "description") attrs[k] = v;
    b_.set_origin(name);
    try {
      size_t first = g_.nodes.size();
      NodeId id;
      LayerInfo info{name, "", kNoNode, {}};
      if (n.contains("op")) {
        std::string op = n["op"];
        if (!OpRegistry::get().find(op) && find_layer(op)) {
          fail(path + "/op", name, "'" + op + "' is a layer, not an op: write \"layer\": \"" + op + "\"");
          poisoned_.insert(i);
          return;
        }
        if (op == "input" || op == "param") {
          fail(path + "/op", name, "declare " + op + "s under \"" + op + "s\", not as nodes");
          poisoned_.insert(i);
          return;
        }
        if (n.contains("inputs") == false && in.empty() && !(OpRegistry::get().find(op) && OpRegistry::get().find(op)->inputs.empty())) {
          fail(path, name, "node has no \"inputs\" and no node before it to read");
          poisoned_.insert(i);
          return;
        }
        id = b_.add(op, in, attrs, name);
        info.kind = op;
        for (NodeId x : in) if (g_.node(x).op == "param") info.params.push_back(x);
      } else {
        std::string layer = n["layer"];
        const LayerDef* def = find_layer(layer);
        if (!def) {
          std::vector<std::string> names;
          for (auto& d : layer_defs()) names.push_back(d.name);
          std::string hint = closest_name(layer, names);
          std::string msg = "unknown layer '" + layer + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)");
          if (OpRegistry::get().find(layer)) msg += "; '" + layer + "' is an op: write \"op\": \"" + layer + "\"";
          fail(path + "/layer", name, msg);
          poisoned_.insert(i);
          return;
        }
        if (in.size() != 1) {
          fail(path + "/inputs", name, "a " + layer + " layer reads exactly one input, got " + std::to_string(in.size()));
          poisoned_.insert(i);
          return;
        }
        Attrs checked = check_attrs(layer + " layer", def->attrs, normalize_layer_attrs(attrs));
        LayerCtx ctx{b_, name, in[0], checked, seed_, {}};
        {
          ScopeGuard scope(b_, name);
          id = def->expand(ctx);
        }
        if (static_cast<size_t>(id) >= first && g_.node(id).name != name) {
          if (g_.find(name) != kNoNode) throw OpError("layer output name clash");
          g_.node(id).name = name;
        }
        info.kind = layer;
        info.params = ctx.params;
      }
      info.output = id;
      g_.layers.push_back(info);
      sym_[name] = id;
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
      if (!ref.is_string()) { fail(path, "", "an output names a node (string), got " + ref.dump()); continue; }
      std::string target = ref;
      auto it = sym_.find(target);
      if (it == sym_.end()) {
        if (defined_at_.count(target)) continue;  // that node failed: already reported
        std::vector<std::string> names;
        for (auto& [k, v] : defined_at_) names.push_back(k);
        std::string hint = closest_name(target, names);
        fail(path, target, "output '" + name + "' names unknown node '" + target + "'" +
                               (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
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
        fail(path, param, "'" + param + "' is not a param of this graph");
        continue;
      }
      if (!ref.is_string()) { fail(path, param, "a gradient names a node (string)"); continue; }
      auto d = sym_.find(ref.get<std::string>());
      if (d == sym_.end()) {
        if (!defined_at_.count(ref.get<std::string>()))
          fail(path, ref.get<std::string>(), "gradient of '" + param + "' names unknown node " + ref.dump());
        continue;
      }
      const auto& pt = g_.node(p->second).type;
      const auto& dt = g_.node(d->second).type;
      if (!(pt == dt)) {
        fail(path, ref.get<std::string>(), "gradient of '" + param + "' " + type_str(pt) + " has type " + type_str(dt));
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
  std::map<std::string, std::string> defined_at_;  // name -> JSON path
  std::map<std::string, NodeId> sym_;              // JSON name -> node
  std::set<size_t> poisoned_;                      // nodes that failed (their users are skipped)
};

}  // namespace

Graph parse_graph(const std::string& text, const std::string& file) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    auto [line, col] = line_column(text, e.byte);
    std::string what = e.what();
    auto pos = what.find("syntax error");
    throw GraphError(file, {{"", "", "not valid JSON: line " + std::to_string(line) + ", column " + std::to_string(col) +
                                         ": " + (pos == std::string::npos ? what : what.substr(pos))}});
  }
  return Frontend(root, file).run();
}

Graph load_graph(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw GraphError(path, {{"", "", "cannot open the file (" + std::string(std::strerror(errno)) + ")"}});
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_graph(ss.str(), path);
}

}  // namespace kiln
