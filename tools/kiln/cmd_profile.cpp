// kiln profile: where a compiled step's time goes, kernel by kernel.
#include <cstdio>

#include "compiler/codegen/profile.h"
#include "compiler/driver/training_setup.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/frontend/train_spec.h"
#include "tools/kiln/command.h"
#include "tools/kiln/distributed.h"

namespace kiln::cli {

Graph load_graph_or_fail(const std::string& path);
TrainSpec load_spec_or_fail(const std::string& path);
void profile_distributed(const Graph& model, const TrainSpec& spec, int steps, int threads, int64_t bucket_bytes,
                         bool overlap);

static RegisterCommand profile_cmd(35, [](CLI::App& app) {
  auto* sub = app.add_subcommand("profile", "Time every kernel of a compiled step (sorted, with JSON nodes and GFLOP/s)");
  struct Opts {
    std::string graph, spec, entry;  // entry "": train_step, or predict without a spec
    int steps = 20, threads = 0, rows = 0;
    int64_t batch = 0, bucket_kb = 4096;
    bool distributed = false, no_overlap = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("graph", o->graph, "model graph JSON")->required()->check(CLI::ExistingFile);
  sub->add_option("--train", o->spec,
                  "training spec (optimizer, frozen params, batch size); without it, the forward entries of the "
                  "graph alone (predict by default, batch 1; e.g. an imported ONNX model)")
      ->check(CLI::ExistingFile);
  sub->add_option("--entry", o->entry, "entry point to profile (default: train_step, or predict without --train)")
      ->check(CLI::IsMember({"train_step", "eval_step", "predict"}));
  sub->add_option("--steps", o->steps, "timed steps (after 2 untimed ones)")->check(CLI::Range(1, 100000));
  sub->add_option("--batch", o->batch, "batch size (default: the spec's)")->check(CLI::Range(1, 1 << 20));
  sub->add_option("--threads", o->threads, "worker threads (default: the spec's, else every core)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--top", o->rows, "show only the N slowest kernels (default: all)")->check(CLI::NonNegativeNumber);
  sub->add_flag("--distributed", o->distributed,
                "under mpirun: data-parallel steps on the spec's data; per rank, the time computing, waiting for "
                "the slowest rank and communicating");
  add_bucket_option(sub, o->bucket_kb);
  sub->add_flag("--no-overlap", o->no_overlap, "--distributed: reduce the gradients after the backward pass, not during it");
  sub->callback([o] {
    Graph g = load_graph_or_fail(o->graph);
    TrainSpec spec;
    const bool forward_only = o->spec.empty();
    if (forward_only) {
      if (o->distributed || o->entry == "train_step")
        throw InputError("profile " + std::string(o->distributed ? "--distributed" : "--entry train_step") +
                         " needs a training spec (--train SPEC)");
      if (o->entry.empty()) o->entry = "predict";
    } else {
      spec = expand_sweeps(load_spec_or_fail(o->spec)).front();
    }
    if (o->entry.empty()) o->entry = "train_step";
    if (o->distributed) {
      if (o->batch) spec.batch_size = o->batch;
      try {
        return profile_distributed(g, spec, o->steps, o->threads ? o->threads : spec.threads, o->bucket_kb * 1024, !o->no_overlap);
      } catch (const std::exception& e) {
        abort_distributed(e.what(), 1);
      }
    }
    int64_t batch = o->batch ? o->batch : forward_only ? 1 : (spec.full_batch ? 64 : spec.batch_size);
    int threads = o->threads ? o->threads : spec.threads;
    driver::CompiledModel m;
    try {
      m = driver::compile_model(std::move(g), forward_only ? nullptr : &spec, batch, threads);
    } catch (const GraphError& e) {
      throw InputError(e.what());
    } catch (const std::invalid_argument& e) {
      throw InputError(e.what());
    }
    driver::initialize(m, spec);
    const lower::Entry* e = m.compiled->loops().entry(o->entry);
    if (!e) throw InputError("the compiled program has no " + o->entry + " entry point");
    auto buffers = codegen::random_entry_buffers(*e, batch, spec.seed, m.features_input,
                                                 spec.optimizer.lr > 0 ? spec.optimizer.lr : 0.01);
    auto p = codegen::profile_entry(*m.compiled, *m.program, o->entry, batch, buffers.inputs, buffers.outputs, o->steps);
    const auto& s = m.compiled->stats();
    std::printf("%s: arena %.1f MB (sum of intermediates %.1f MB), compiled in %.0f ms\n", m.graphs->model.name.c_str(),
                static_cast<double>(s.arena_bytes) / 1e6, static_cast<double>(s.intermediate_bytes) / 1e6, m.compile_ms);
    std::fputs(codegen::format_profile(p, static_cast<size_t>(o->rows)).c_str(), stdout);
  });
});

}  // namespace kiln::cli
