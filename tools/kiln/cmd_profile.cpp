// kiln profile: where a compiled step's time goes, kernel by kernel.
#include <cstdio>

#include "compiler/autodiff/train_step.h"
#include "compiler/codegen/check_numerics.h"
#include "compiler/codegen/profile.h"
#include "compiler/driver/training_setup.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/frontend/train_spec.h"
#include "tools/kiln/command.h"

namespace kiln::cli {

Graph load_graph_or_fail(const std::string& path);

static RegisterCommand profile_cmd(35, [](CLI::App& app) {
  auto* sub = app.add_subcommand("profile", "Time every kernel of a compiled step (sorted, with JSON nodes and GFLOP/s)");
  struct Opts {
    std::string graph, spec, entry = "train_step";
    int steps = 20, threads = 0, rows = 0;
    int64_t batch = 0;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("graph", o->graph, "model graph JSON")->required()->check(CLI::ExistingFile);
  sub->add_option("--train", o->spec, "training spec (optimizer, frozen params, batch size)")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--entry", o->entry, "entry point to profile")
      ->check(CLI::IsMember({"train_step", "eval_step", "predict"}));
  sub->add_option("--steps", o->steps, "timed steps (after 2 untimed ones)")->check(CLI::Range(1, 100000));
  sub->add_option("--batch", o->batch, "batch size (default: the spec's)")->check(CLI::Range(1, 1 << 20));
  sub->add_option("--threads", o->threads, "worker threads (default: the spec's, else every core)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--top", o->rows, "show only the N slowest kernels (default: all)")->check(CLI::NonNegativeNumber);
  sub->callback([o] {
    Graph g = load_graph_or_fail(o->graph);
    TrainSpec spec;
    try {
      spec = expand_sweeps(load_train_spec(o->spec)).front();
    } catch (const GraphError& e) {
      throw InputError(e.what());
    }
    int64_t batch = o->batch ? o->batch : (spec.full_batch ? 64 : spec.batch_size);
    int threads = o->threads ? o->threads : spec.threads;
    driver::CompiledModel m;
    try {
      m = driver::compile_model(std::move(g), &spec, batch, threads);
    } catch (const GraphError& e) {
      throw InputError(e.what());
    } catch (const std::invalid_argument& e) {
      throw InputError(e.what());
    }
    driver::initialize(m, spec);
    // Random batches of the right shapes: kernel times do not depend on the values.
    const lower::Entry* e = m.compiled->loops().entry(o->entry);
    if (!e) throw InputError("the compiled program has no " + o->entry + " entry point");
    auto feeds = codegen::random_feeds(*e, batch, spec.seed);
    if (feeds.count(m.features_input))
      for (auto& v : feeds.at(m.features_input).data) v = (v + 1) / 2;
    if (feeds.count(kLearningRateInput)) feeds.at(kLearningRateInput).data = {spec.optimizer.lr > 0 ? spec.optimizer.lr : 0.01};
    std::vector<std::vector<uint8_t>> in_bytes, out_bytes;
    std::vector<const void*> inputs;
    std::vector<void*> outputs;
    for (auto& t : e->inputs) {
      in_bytes.push_back(codegen::to_bytes(feeds.at(t.name), t.dtype));
      inputs.push_back(in_bytes.back().data());
    }
    for (auto& t : e->outputs) {
      out_bytes.emplace_back(static_cast<size_t>(numel(t.shape, batch) * static_cast<int64_t>(dtype_size(t.dtype))) + 8);
      outputs.push_back(out_bytes.back().data());
    }
    auto p = codegen::profile_entry(*m.compiled, *m.program, o->entry, batch, inputs, outputs, o->steps);
    const auto& s = m.compiled->stats();
    std::printf("%s: arena %.1f MB (sum of intermediates %.1f MB), compiled in %.0f ms\n", m.graphs->model.name.c_str(),
                static_cast<double>(s.arena_bytes) / 1e6, static_cast<double>(s.intermediate_bytes) / 1e6, m.compile_ms);
    std::fputs(codegen::format_profile(p, static_cast<size_t>(o->rows)).c_str(), stdout);
  });
});

}  // namespace kiln::cli
