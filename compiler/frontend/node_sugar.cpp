#include "compiler/frontend/node_sugar.h"

#include "compiler/ops/registry.h"

namespace kiln {

using json = nlohmann::json;

namespace {

std::string name_of(const json& n) {
  return n.is_object() && n.contains("name") && n["name"].is_string() ? n["name"].get<std::string>() : "";
}

// A split node that names its parts rather than picking one, with a part
// count readable from sizes or parts (anything else is reported on the node as written).
bool defines_parts(const json& n) {
  if (!n.contains("op") || n["op"] != "split" || n.contains("index") || name_of(n).empty()) return false;
  if (n.contains("sizes")) return n["sizes"].is_array() && !n["sizes"].empty() && !n.contains("parts");
  return n.contains("parts") && n["parts"].is_number_integer() && n["parts"].get<int64_t>() > 0 &&
         n["parts"].get<int64_t>() <= 4096;
}

void flatten(const json& n, const std::string& path, FlatNodes& out) {
  if (!n.is_object() || !n.contains("inputs") || !n["inputs"].is_array()) {
    out.nodes.push_back(n);
    out.paths.push_back(path);
    return;
  }
  json copy = n;
  const std::string parent = name_of(n);
  // A split's parts take the names <name>/k: its inline input is <name>/input.
  const bool parts = defines_parts(n);
  for (size_t j = 0; j < n["inputs"].size(); ++j) {
    const json& in = n["inputs"][j];
    json child;
    if (in.is_number()) child = {{"op", "constant"}, {"value", in}};
    else if (in.is_object() && (in.contains("op") || in.contains("layer"))) child = in;
    else continue;
    if (!child.contains("name")) child["name"] = parent + "/" + (parts ? std::string("input") : std::to_string(j));
    if (!child.contains("inputs") && !reads_no_input(child)) child["inputs"] = json::array();
    copy["inputs"][j] = child["name"];
    flatten(child, path + "/inputs/" + std::to_string(j), out);
  }
  if (!parts) {
    out.nodes.push_back(std::move(copy));
    out.paths.push_back(path);
    return;
  }
  const int64_t count = copy.contains("sizes") ? static_cast<int64_t>(copy["sizes"].size()) : copy["parts"].get<int64_t>();
  out.split_parts[parent] = count;
  for (int64_t k = 0; k < count; ++k) {
    json part = copy;
    part["name"] = parent + "/" + std::to_string(k);
    part["index"] = k;
    out.nodes.push_back(std::move(part));
    out.paths.push_back(path);
  }
}

}  // namespace

bool reads_no_input(const json& n) {
  if (!n.contains("op") || !n["op"].is_string()) return false;
  const OpDef* def = OpRegistry::get().find(n["op"].get<std::string>());
  return def && !def->variadic && def->inputs.empty();
}

FlatNodes flatten_nodes(const json& nodes) {
  FlatNodes out;
  for (size_t i = 0; i < nodes.size(); ++i) flatten(nodes[i], "/nodes/" + std::to_string(i), out);
  return out;
}

}  // namespace kiln
