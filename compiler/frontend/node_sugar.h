#pragma once
// Sugar in a graph's "nodes" list, rewritten into plain nodes before the
// graph is built:
//   - inline nodes ({"op": ..., "inputs": [...]} inside an inputs list) and
//     numbers become nodes of their own, named after their reader and
//     position ("dw2/0", "dw2/1/0", ...) unless they carry a name, placed
//     before their reader;
//   - a split node without "index" defines one node per part, named
//     "<name>/0", "<name>/1", ... (an inline node it reads is "<name>/input")
// Every resulting node keeps its place in the file for errors ("/nodes/3/inputs/0").
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kiln {

struct FlatNodes {
  nlohmann::json nodes = nlohmann::json::array();  // plain nodes, each after the inline nodes it reads
  std::vector<std::string> paths;                   // each one's JSON path in the file
  std::map<std::string, int64_t> split_parts;       // split nodes that define parts: name -> part count
};

FlatNodes flatten_nodes(const nlohmann::json& nodes);

// Ops like constant take no inputs: the sequential sugar (a node without
// "inputs" reads the node before it) does not apply to them.
bool reads_no_input(const nlohmann::json& node);

}  // namespace kiln
