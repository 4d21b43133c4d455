#include "compiler/frontend/diagnostics.h"

#include <algorithm>

namespace kiln {

std::string format_diagnostic(const Diagnostic& d, const std::string& file) {
  std::string out = file;
  if (!d.path.empty()) out += ": " + d.path;
  if (!d.node.empty()) out += (d.path.empty() ? ": (node '" : " (node '") + d.node + "')";
  return out + ": " + d.message;
}

static std::vector<std::string> path_segments(const std::string& path) {
  std::vector<std::string> out;
  for (size_t i = 1; i <= path.size() && !path.empty();) {
    size_t j = std::min(path.find('/', i), path.size());
    out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

static bool is_index(const std::string& s) {
  return !s.empty() && s.size() < 18 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

void sort_in_document_order(std::vector<Diagnostic>& diags, const std::vector<std::string>& top_keys) {
  auto rank = [&](const std::string& k) { return std::find(top_keys.begin(), top_keys.end(), k) - top_keys.begin(); };
  std::stable_sort(diags.begin(), diags.end(), [&](const Diagnostic& a, const Diagnostic& b) {
    auto sa = path_segments(a.path), sb = path_segments(b.path);
    for (size_t i = 0; i < std::min(sa.size(), sb.size()); ++i) {
      if (sa[i] == sb[i]) continue;
      if (i == 0 && rank(sa[0]) != rank(sb[0])) return rank(sa[0]) < rank(sb[0]);
      if (is_index(sa[i]) && is_index(sb[i])) return std::stoll(sa[i]) < std::stoll(sb[i]);
      return sa[i] < sb[i];
    }
    return sa.size() < sb.size();
  });
}

static std::string join(const std::string& file, const std::vector<Diagnostic>& diags) {
  std::string msg = std::to_string(diags.size()) + (diags.size() == 1 ? " problem" : " problems") + " in " + file + ":";
  for (auto& d : diags) msg += "\n  " + format_diagnostic(d, file);
  return msg;
}

GraphError::GraphError(std::string f, std::vector<Diagnostic> diags)
    : std::runtime_error(join(f, diags)), file(std::move(f)), diagnostics(std::move(diags)) {}

}  // namespace kiln
