#include "compiler/frontend/diagnostics.h"

namespace kiln {

std::string format_diagnostic(const Diagnostic& d, const std::string& file) {
  std::string out = file + ":";
  if (!d.path.empty()) out += " " + d.path;
  if (!d.node.empty()) out += " (node '" + d.node + "')";
  return out + ": " + d.message;
}

static std::string join(const std::string& file, const std::vector<Diagnostic>& diags) {
  std::string msg = std::to_string(diags.size()) + (diags.size() == 1 ? " problem" : " problems") + " in " + file + ":";
  for (auto& d : diags) msg += "\n  " + format_diagnostic(d, file);
  return msg;
}

GraphError::GraphError(std::string f, std::vector<Diagnostic> diags)
    : std::runtime_error(join(f, diags)), file(std::move(f)), diagnostics(std::move(diags)) {}

}  // namespace kiln
