// Shrinking a failing case, and cases as fixtures (kiln.difftest/1).
#include <set>

#include "compiler/frontend/graph_json.h"
#include "compiler/ops/registry.h"
#include "tools/difftest/difftest.h"

namespace kiln::difftest {

namespace {

// Keeps the nodes the outputs need (inputs and params included), in order.
void prune(Graph& g) {
  std::vector<bool> live(g.nodes.size(), false);
  for (auto& [name, id] : g.outputs) live[static_cast<size_t>(id)] = true;
  for (size_t i = g.nodes.size(); i-- > 0;)
    if (live[i])
      for (NodeId in : g.nodes[i].inputs) live[static_cast<size_t>(in)] = true;
  std::vector<NodeId> remap(g.nodes.size(), kNoNode);
  std::vector<Node> kept;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!live[i]) continue;
    Node n = g.nodes[i];
    for (NodeId& in : n.inputs) in = remap[static_cast<size_t>(in)];
    remap[i] = static_cast<NodeId>(kept.size());
    kept.push_back(std::move(n));
  }
  g.nodes = std::move(kept);
  for (auto& [name, id] : g.outputs) id = remap[static_cast<size_t>(id)];
  g.layers.clear();
}

// Node `id` becomes a fed input of its own type.
Case as_input(const Case& c, NodeId id) {
  Case out = c;
  Node& n = out.model.node(id);
  n.attrs = {{"shape", n.type.shape}, {"dtype", dtype_name(n.type.dtype)}};
  n.op = "input";
  n.inputs.clear();
  out.ranges[n.name] = is_float(n.type.dtype) ? ValueRange{-1, 1, 0} : ValueRange{0, 2, 0};
  prune(out.model);
  return out;
}

// Node `id`'s readers read `by` instead (an input of the same type).
Case bypass(const Case& c, NodeId id, NodeId by) {
  Case out = c;
  for (Node& n : out.model.nodes)
    for (NodeId& in : n.inputs)
      if (in == id) in = by;
  for (auto& [name, o] : out.model.outputs)
    if (o == id) o = by;
  prune(out.model);
  return out;
}

bool valid(const Case& c) { return verify(c.model).empty() && c.model.output("loss") != kNoNode; }

}  // namespace

Case shrink(const Case& start, const std::function<bool(const Case&)>& fails) {
  Case best = start;
  for (bool changed = true; changed;) {
    changed = false;
    // Outputs other than the loss, then nodes from the last: each replaced by
    // a fed input, or bypassed by one of its inputs of the same type.
    for (size_t k = 0; k < best.model.outputs.size() && !changed; ++k) {
      if (best.model.outputs[k].first == "loss") continue;
      Case t = best;
      t.model.outputs.erase(t.model.outputs.begin() + static_cast<std::ptrdiff_t>(k));
      prune(t.model);
      if (valid(t) && fails(t)) best = std::move(t), changed = true;
    }
    for (size_t i = best.model.nodes.size(); i-- > 0 && !changed;) {
      const Node& n = best.model.nodes[i];
      if (n.op == "input" || n.op == "param") continue;
      std::vector<Case> tries;
      for (NodeId in : n.inputs)
        if (best.model.node(in).type == n.type) tries.push_back(bypass(best, static_cast<NodeId>(i), in));
      tries.push_back(as_input(best, static_cast<NodeId>(i)));
      for (Case& t : tries)
        if (valid(t) && fails(t)) {
          best = std::move(t);
          changed = true;
          break;
        }
    }
  }
  return best;
}

nlohmann::json graph_to_json(const Graph& g) {
  nlohmann::json j = {{"format", kGraphFormat}, {"name", g.name}};
  nlohmann::json inputs = nlohmann::json::object(), params = nlohmann::json::object(), nodes = nlohmann::json::array();
  for (const Node& n : g.nodes) {
    if (n.op == "input") {
      inputs[n.name] = {{"shape", n.type.shape}, {"dtype", dtype_name(n.type.dtype)}};
    } else if (n.op == "param") {
      nlohmann::json p = {{"shape", n.type.shape}, {"dtype", dtype_name(n.type.dtype)}};
      if (n.attrs.contains("init")) p["init"] = n.attrs.at("init");
      if (n.attrs.contains("trainable")) p["trainable"] = n.attrs.at("trainable");
      params[n.name] = p;
    } else {
      nlohmann::json node = n.attrs;
      node["name"] = n.name;
      node["op"] = n.op;
      node["inputs"] = nlohmann::json::array();
      for (NodeId in : n.inputs) node["inputs"].push_back(g.node(in).name);
      nodes.push_back(node);
    }
  }
  j["inputs"] = inputs;
  j["params"] = params;
  j["nodes"] = nodes;
  nlohmann::json outputs = nlohmann::json::object();
  for (auto& [name, id] : g.outputs) outputs[name] = g.node(id).name;
  j["outputs"] = outputs;
  return j;
}

nlohmann::json case_to_json(const Case& c, const std::string& finding) {
  nlohmann::json ranges = nlohmann::json::object();
  for (auto& [name, r] : c.ranges)
    if (c.model.find(name) != kNoNode) ranges[name] = {{"lo", r.lo}, {"hi", r.hi}, {"index_bound", r.index_bound}};
  return {{"format", "kiln.difftest/1"}, {"seed", c.seed}, {"large", c.large}, {"finding", finding},
          {"ranges", ranges}, {"graph", graph_to_json(c.model)}};
}

Case case_from_json(const nlohmann::json& j, const std::string& file) {
  if (j.value("format", "") != "kiln.difftest/1")
    throw std::runtime_error(file + ": not a kiln.difftest/1 fixture (format " + j.value("format", "missing") + ")");
  Case c;
  c.seed = j.at("seed").get<uint64_t>();
  c.large = j.value("large", false);
  c.model = parse_graph(j.at("graph").dump(), file + " (graph)");
  for (auto& [name, r] : j.at("ranges").items())
    c.ranges[name] = {r.at("lo").get<double>(), r.at("hi").get<double>(), r.at("index_bound").get<int64_t>()};
  return c;
}

CheckOptions fixture_options(const nlohmann::json& j) {
  CheckOptions o;
  if (j.contains("checks")) {
    o.checks.clear();
    for (auto& name : j.at("checks"))
      for (Check c : all_checks())
        if (check_name(c) == name.get<std::string>()) o.checks.push_back(c);
  }
  std::string planted = j.value("planted", "none");
  for (Planted p : {Planted::none, Planted::nan, Planted::inf, Planted::denormal, Planted::zero})
    if (planted_name(p) == planted) o.planted = p;
  return o;
}

}  // namespace kiln::difftest
