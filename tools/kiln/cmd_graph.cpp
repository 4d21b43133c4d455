// kiln check / summary: reading graphs.
#include <cstdio>
#include <iostream>
#include <set>
#include <sstream>

#include "compiler/frontend/graph_json.h"
#include "compiler/ops/registry.h"
#include "tools/kiln/command.h"

namespace kiln::cli {

// Loads a graph, turning frontend errors into InputError (exit 1).
Graph load_graph_or_fail(const std::string& path) {
  try {
    return load_graph(path);
  } catch (const GraphError& e) {
    throw InputError(e.what());
  }
}

static std::string with_commas(int64_t n) {
  std::string s = std::to_string(n), out;
  int count = 0;
  for (auto it = s.rbegin(); it != s.rend(); ++it) {
    if (count++ && count % 3 == 1 && *it != '-') out.insert(out.begin(), ',');
    out.insert(out.begin(), *it);
  }
  return out;
}

static std::string summary_shape(const Shape& s) {
  if (s.empty()) return "scalar";
  size_t first = s[0] == kOpenDim ? 1 : 0;
  if (first == s.size()) return "scalar per item";
  std::string out;
  for (size_t i = first; i < s.size(); ++i) out += (i > first ? "x" : "") + std::to_string(s[i]);
  return out;
}

// Keras-like table of the nodes that compute the logits (all nodes if none).
std::string graph_summary(const Graph& g) {
  std::set<NodeId> wanted;
  NodeId logits = g.output("logits");
  if (logits != kNoNode) {
    std::vector<NodeId> stack{logits};
    while (!stack.empty()) {
      NodeId id = stack.back();
      stack.pop_back();
      if (!wanted.insert(id).second) continue;
      for (NodeId in : g.node(id).inputs) stack.push_back(in);
    }
  }
  std::ostringstream os;
  char line[256];
  os << "Model: \"" << g.name << "\"\n";
  std::string rule(72, '-');
  os << rule << "\n";
  std::snprintf(line, sizeof line, "%-34s %-22s %14s\n", "Layer (type)", "Output Shape", "Param #");
  os << line << rule << "\n";
  std::set<NodeId> counted;
  for (const LayerInfo& l : g.layers) {
    if (logits != kNoNode && !wanted.count(l.output)) continue;
    int64_t n = 0;
    for (NodeId p : l.params)
      if (counted.insert(p).second) n += numel(g.node(p).type.shape);
    std::string label = l.name + " (" + l.kind + ")";
    std::snprintf(line, sizeof line, "%-34s %-22s %14s\n", label.c_str(),
                  summary_shape(g.node(l.output).type.shape).c_str(), with_commas(n).c_str());
    os << line;
  }
  os << rule << "\n";
  int64_t total = param_count(g), trainable = param_count(g, true);
  os << "Total params: " << with_commas(total) << "\n";
  os << "Trainable params: " << with_commas(trainable) << "\n";
  os << "Non-trainable params: " << with_commas(total - trainable) << "\n";
  int64_t macs = 0;
  for (const Node& n : g.nodes) macs += multiply_adds(g, n);
  if (macs > 0) os << "Multiply-adds per example: " << with_commas(macs) << "\n";
  return os.str();
}

static RegisterCommand check_cmd(10, [](CLI::App& app) {
  auto* sub = app.add_subcommand("check", "Parse a graph, infer every shape and report every problem (exit 1 if any)");
  auto files = std::make_shared<std::vector<std::string>>();
  sub->add_option("graphs", *files, "graph JSON files")->required()->check(CLI::ExistingFile);
  sub->callback([files] {
    int bad = 0;
    for (auto& f : *files) {
      try {
        Graph g = load_graph(f);
        std::cout << f << ": ok (" << g.nodes.size() << " nodes, " << with_commas(param_count(g)) << " params)\n";
      } catch (const GraphError& e) {
        std::cerr << e.what() << "\n";
        ++bad;
      }
    }
    if (bad) throw InputError(std::to_string(bad) + " of " + std::to_string(files->size()) + " graphs have problems");
  });
});

static RegisterCommand summary_cmd(11, [](CLI::App& app) {
  auto* sub = app.add_subcommand("summary", "Print a Keras-like table: layers, output shapes, param counts");
  auto file = std::make_shared<std::string>();
  sub->add_option("graph", *file, "graph JSON file")->required()->check(CLI::ExistingFile);
  sub->callback([file] { std::cout << graph_summary(load_graph_or_fail(*file)); });
});

}  // namespace kiln::cli
