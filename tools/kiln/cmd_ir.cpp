// kiln ir: print a graph at any stage of the pipeline.
#include <iostream>

#include "compiler/autodiff/autodiff.h"
#include "compiler/autodiff/train_step.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/frontend/train_spec.h"
#include "compiler/passes/pass_manager.h"
#include "tools/kiln/command.h"

namespace kiln::cli {

Graph load_graph_or_fail(const std::string& path);

namespace {

struct IrOpts {
  std::string file, stage = "graph", format = "text", spec;
  bool dump_after_each = false;
};

// graph: the frontend's typed graph; grad: + autodiff's backward nodes;
// optimized: the whole training step (forward, backward, update) after the
// simplify pipeline.
Graph graph_at_stage(const IrOpts& o) {
  Graph g = load_graph_or_fail(o.file);
  if (o.stage == "graph") return g;
  TrainStepConfig config;
  if (!o.spec.empty()) {
    TrainSpec spec = expand_sweeps(load_train_spec(o.spec)).front();
    apply_trainable_patterns(g, spec);
    config = train_step_config(spec);
  }
  if (o.stage == "grad") return build_gradient_graph(g);
  Graph step = build_train_step(g, config);
  PipelineOptions options;
  if (o.dump_after_each) {
    options.dump = &std::cout;
    std::cout << "// ---- training step before the passes: " << step.nodes.size() << " nodes\n" << print_graph(step);
  }
  for (const PassRun& r : run_pipeline(step, "simplify", options))
    std::cerr << "pass " << r.pass << " (round " << r.round << "): " << r.nodes_before << " -> " << r.nodes_after
              << " nodes\n";
  return step;
}

}  // namespace

static RegisterCommand ir_cmd(20, [](CLI::App& app) {
  auto* sub = app.add_subcommand("ir", "Print the IR of a graph at one stage of the pipeline");
  auto o = std::make_shared<IrOpts>();
  sub->add_option("graph", o->file, "graph JSON file")->required()->check(CLI::ExistingFile);
  sub->add_option("--stage", o->stage,
                  "graph: the typed graph of primitives after the frontend; grad: with autodiff's backward nodes "
                  "(outputs grad:<param>); optimized: the training step after the simplify passes")
      ->check(CLI::IsMember({"graph", "grad", "optimized"}));
  sub->add_option("--format", o->format, "text or dot (Graphviz)")->check(CLI::IsMember({"text", "dot"}));
  sub->add_option("--spec", o->spec, "training spec (optimizer, frozen params) for --stage optimized")
      ->check(CLI::ExistingFile);
  sub->add_flag("--dump-after-each,--print-after-all", o->dump_after_each,
                "with --stage optimized: print each pass's name, node counts and the graph after it");
  sub->callback([o] {
    // GraphError, AutodiffError, ...: main() prints any error and exits 1.
    Graph g = graph_at_stage(*o);
    std::cout << (o->format == "dot" ? print_dot(g) : print_graph(g));
  });
});

}  // namespace kiln::cli
