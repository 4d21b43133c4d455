#pragma once
// The kiln.graph/1 frontend: JSON text -> a typed, verified Graph of primitives.
// Every problem in the file is reported at once (GraphError), each with its
// JSON path and node name.
#include <string>

#include "compiler/frontend/diagnostics.h"
#include "compiler/ir/graph.h"

namespace kiln {

constexpr const char* kGraphFormat = "kiln.graph/1";

// `file` only labels the messages.
Graph parse_graph(const std::string& text, const std::string& file = "<graph>");
// Reads and parses; a missing or unreadable file is a GraphError too.
Graph load_graph(const std::string& path);

}  // namespace kiln
