#pragma once
// Located problems in a graph file: each names the JSON path (RFC 6901
// pointer) and, where there is one, the node.
#include <stdexcept>
#include <string>
#include <vector>

namespace kiln {

struct Diagnostic {
  std::string path;     // "/nodes/3/inputs/0"
  std::string node;     // "h" (empty for file-level problems)
  std::string message;
};

std::string format_diagnostic(const Diagnostic& d, const std::string& file);

// Sorts (stably) as the file reads: first path segments in the order of
// `top_keys`, array indices numerically, other keys alphabetically.
void sort_in_document_order(std::vector<Diagnostic>& diags, const std::vector<std::string>& top_keys);

// Thrown by the frontend with every problem found in the file.
struct GraphError : std::runtime_error {
  GraphError(std::string file, std::vector<Diagnostic> diags);
  std::string file;
  std::vector<Diagnostic> diagnostics;
};

}  // namespace kiln
