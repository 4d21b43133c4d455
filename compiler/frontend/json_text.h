#pragma once
// Reading the JSON text of a graph file, before any meaning is given to it:
// syntax errors are located by line and column; numbers too large for a double
// (1e999) are located by JSON path and read as null, so the rest of the file
// is still checked; nesting deeper than any graph needs is refused before it
// can exhaust the stack of the recursive JSON routines that follow.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compiler/frontend/diagnostics.h"

namespace kiln {

constexpr int kMaxJsonDepth = 64;

struct JsonText {
  nlohmann::json root;
  // One per non-finite number; `node` is empty (the frontend fills it in).
  std::vector<Diagnostic> problems;
  // The same locations as path segments (unescaped), for the frontend.
  std::vector<std::vector<std::string>> problem_segments;
};

// Throws GraphError (with line and column) for text that is not JSON.
JsonText parse_json_text(const std::string& text, const std::string& file);

// Byte offset -> 1-based line and column.
std::pair<size_t, size_t> line_column(const std::string& text, size_t byte_offset);

// RFC 6901 escaping of one path segment.
std::string json_pointer_segment(const std::string& key);

}  // namespace kiln
