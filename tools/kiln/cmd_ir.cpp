// kiln ir: print a graph at any stage of the pipeline.
#include <iostream>

#include "compiler/autodiff/autodiff.h"
#include "compiler/autodiff/train_step.h"
#include "compiler/codegen/codegen.h"
#include "compiler/codegen/programs.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/lower/fusion.h"
#include "compiler/frontend/train_spec.h"
#include "compiler/passes/pass_manager.h"
#include "tools/kiln/command.h"

namespace kiln::cli {

Graph load_graph_or_fail(const std::string& path);

namespace {

struct IrOpts {
  std::string file, stage = "graph", format = "text", spec, kernel, entry;
  bool dump_after_each = false, why = false;
  int64_t batch = 64;
  int vector_bits = 0;
};

TrainStepConfig config_for(Graph& g, const IrOpts& o) {
  TrainStepConfig config;
  if (!o.spec.empty()) {
    TrainSpec spec = expand_sweeps(load_train_spec(o.spec)).front();
    apply_train_spec(g, spec);
    config = train_step_config(spec);
  }
  return config;
}

// graph: the frontend's typed graph; grad: + autodiff's backward nodes;
// optimized: the whole training step (forward, backward, update) after the
// simplify pipeline.
Graph graph_at_stage(const IrOpts& o) {
  Graph g = load_graph_or_fail(o.file);
  if (o.stage == "graph") return g;
  TrainStepConfig config = config_for(g, o);
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

// loops | llvm | asm: the compiled program (predict, eval_step, and
// train_step when the model has a loss), or only the kernels --kernel selects.
void print_program_stage(const IrOpts& o) {
  Graph g = load_graph_or_fail(o.file);
  TrainStepConfig config = config_for(g, o);
  bool trains = g.output("loss") != kNoNode;
  auto graphs = codegen::program_graphs(std::move(g), trains ? &config : nullptr);
  std::vector<lower::EntrySpec> entries = graphs->entries();
  if (!o.entry.empty()) {
    // One entry point alone, in its own mode (predict: the inference form).
    std::string names;
    for (auto& e : entries) names += (names.empty() ? "" : ", ") + e.name;
    std::erase_if(entries, [&](const lower::EntrySpec& e) { return e.name != o.entry; });
    if (entries.empty()) throw InputError("no entry '" + o.entry + "' in this program (it has " + names + ")");
  }
  std::vector<std::string> why;
  lower::Program p = lower::lower_program(
      graphs->model.name, entries,
      {.max_batch = o.batch, .why = &why, .dump = o.stage == "loops" && o.dump_after_each ? &std::cout : nullptr});
  if (o.stage == "loops") {
    if (o.why) std::cout << lower::print_fusion_why(why);
    if (o.kernel.empty()) {
      std::cout << lower::print_program(p);
      return;
    }
    auto ks = codegen::select_kernels(p, o.kernel);
    if (ks.empty()) throw InputError("no kernel matches '" + o.kernel + "' (see kiln ir " + o.file + " --stage loops)");
    for (auto* k : ks) std::cout << lower::print_kernel(p, *k);
    return;
  }
  codegen::CodegenOptions copts{.vector_bits = o.vector_bits};
  try {
    std::cout << (o.stage == "llvm" ? codegen::llvm_ir_text(p, o.kernel, copts) : codegen::asm_text(p, o.kernel, copts));
  } catch (const std::runtime_error& e) {
    throw InputError(e.what());
  }
}

}  // namespace

static RegisterCommand ir_cmd(20, [](CLI::App& app) {
  auto* sub = app.add_subcommand("ir", "Print the IR of a graph at one stage of the pipeline");
  auto o = std::make_shared<IrOpts>();
  sub->add_option("graph", o->file, "graph JSON file")->required()->check(CLI::ExistingFile);
  sub->add_option("--stage", o->stage,
                  "graph: the typed graph of primitives after the frontend; grad: with autodiff's backward nodes "
                  "(outputs grad:<param>); optimized: the training step after the simplify passes; loops: the "
                  "Loop IR kernels of predict, eval_step and train_step; llvm: their optimized LLVM IR; asm: host "
                  "assembly")
      ->check(CLI::IsMember({"graph", "grad", "optimized", "loops", "llvm", "asm"}));
  sub->add_option("--format", o->format, "text or dot (Graphviz)")->check(CLI::IsMember({"text", "dot"}));
  sub->add_option("--spec", o->spec, "training spec (optimizer, frozen params) for the training step")
      ->check(CLI::ExistingFile);
  sub->add_flag("--dump-after-each,--print-after-all", o->dump_after_each,
                "with --stage optimized: print each graph pass's name, node counts and the graph after it; with "
                "--stage loops: the Loop IR after lowering and after each loop pass");
  sub->add_flag("--why", o->why, "loops: first say which nodes were fused into one kernel, which were not, and why");
  sub->add_option("--kernel", o->kernel,
                  "loops|llvm|asm: only this kernel (its name, its graph node or JSON node, or part of its name)");
  sub->add_option("--entry", o->entry, "loops|llvm|asm: only this entry point (predict, eval_step, train_step)");
  sub->add_option("--batch", o->batch, "loops|llvm|asm: the maximum batch size compiled for")
      ->check(CLI::Range(1, 1 << 20));
  sub->add_option("--vector-bits", o->vector_bits, "llvm|asm: SIMD width (default: the host's widest)")
      ->check(CLI::IsMember({0, 128, 256, 512}));
  sub->callback([o] {
    // GraphError, AutodiffError, ...: main() prints any error and exits 1.
    if (o->stage == "loops" || o->stage == "llvm" || o->stage == "asm") {
      print_program_stage(*o);
      return;
    }
    Graph g = graph_at_stage(*o);
    std::cout << (o->format == "dot" ? print_dot(g) : print_graph(g));
  });
});

}  // namespace kiln::cli
