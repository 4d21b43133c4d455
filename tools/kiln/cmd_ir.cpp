// kiln ir: print a graph at any stage of the pipeline.
#include <iostream>

#include "compiler/frontend/graph_json.h"
#include "tools/kiln/command.h"

namespace kiln::cli {

Graph load_graph_or_fail(const std::string& path);

static RegisterCommand ir_cmd(20, [](CLI::App& app) {
  auto* sub = app.add_subcommand("ir", "Print the IR of a graph at one stage of the pipeline");
  struct Opts { std::string file, stage = "graph", format = "text"; };
  auto o = std::make_shared<Opts>();
  sub->add_option("graph", o->file, "graph JSON file")->required()->check(CLI::ExistingFile);
  sub->add_option("--stage", o->stage, "graph: the typed graph of primitives after the frontend")
      ->check(CLI::IsMember({"graph"}));
  sub->add_option("--format", o->format, "text or dot (Graphviz)")->check(CLI::IsMember({"text", "dot"}));
  sub->callback([o] {
    Graph g = load_graph_or_fail(o->file);
    std::cout << (o->format == "dot" ? print_dot(g) : print_graph(g));
  });
});

}  // namespace kiln::cli
