// kiln ir: print a graph at any stage of the pipeline.
#include <iostream>

#include "compiler/codegen/codegen.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/lower/lower_program.h"
#include "tools/kiln/command.h"

namespace kiln::cli {

Graph load_graph_or_fail(const std::string& path);

static RegisterCommand ir_cmd(20, [](CLI::App& app) {
  auto* sub = app.add_subcommand("ir", "Print the IR of a graph at one stage of the pipeline");
  struct Opts {
    std::string file, stage = "graph", format = "text", kernel;
    int64_t batch = 64;
    int vector_bits = 0;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("graph", o->file, "graph JSON file")->required()->check(CLI::ExistingFile);
  sub->add_option("--stage", o->stage,
                  "graph: the typed graph of primitives after the frontend; loops: the Loop IR kernels; "
                  "llvm: optimized LLVM IR; asm: host assembly")
      ->check(CLI::IsMember({"graph", "loops", "llvm", "asm"}));
  sub->add_option("--format", o->format, "text or dot (Graphviz), for --stage graph")
      ->check(CLI::IsMember({"text", "dot"}));
  sub->add_option("--kernel", o->kernel,
                  "only this kernel (its name, its graph node or JSON node, or part of its name); loops|llvm|asm");
  sub->add_option("--batch", o->batch, "maximum batch size the program is compiled for")->check(CLI::Range(1, 1 << 20));
  sub->add_option("--vector-bits", o->vector_bits, "SIMD width (default: the host's widest)")
      ->check(CLI::IsMember({0, 128, 256, 512}));
  sub->callback([o] {
    Graph g = load_graph_or_fail(o->file);
    if (o->stage == "graph") {
      std::cout << (o->format == "dot" ? print_dot(g) : print_graph(g));
      return;
    }
    lower::Program p = lower::lower_program(g.name, lower::forward_entries(g), {.max_batch = o->batch});
    codegen::CodegenOptions copts{.vector_bits = o->vector_bits};
    if (o->stage == "loops") {
      if (o->kernel.empty()) {
        std::cout << lower::print_program(p);
        return;
      }
      auto ks = codegen::select_kernels(p, o->kernel);
      if (ks.empty()) throw InputError("no kernel matches '" + o->kernel + "' (see kiln ir " + o->file + " --stage loops)");
      for (auto* k : ks) std::cout << lower::print_kernel(p, *k);
      return;
    }
    try {
      std::cout << (o->stage == "llvm" ? codegen::llvm_ir_text(p, o->kernel, copts)
                                       : codegen::asm_text(p, o->kernel, copts));
    } catch (const std::runtime_error& e) {
      throw InputError(e.what());
    }
  });
});

}  // namespace kiln::cli
