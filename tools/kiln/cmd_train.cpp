// kiln train: train a graph with a training spec, compiled (JIT) steps.
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "compiler/codegen/compile_cache.h"
#include "compiler/driver/training_setup.h"
#include "tools/kiln/command.h"
#include "tools/kiln/train_run.h"

namespace kiln::cli {
namespace {

TrainSpec load_spec_or_fail(const std::string& path) {
  try {
    return load_train_spec(path);
  } catch (const GraphError& e) {
    throw InputError(e.what());
  }
}

RegisterCommand reg{60, [](CLI::App& app) {
  auto* sub = app.add_subcommand("train", "Train a graph as a training spec says (compiled train/eval steps)");
  struct Opts {
    std::string graph, spec;
    RunOptions run;
    std::optional<uint64_t> seed;
    std::string cache_dir;
    bool no_cache = false;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("graph", o->graph, "model graph JSON (replaces the spec's graph)")->required()->check(CLI::ExistingFile);
  sub->add_option("spec", o->spec, "training spec JSON (kiln.train/1)")->required()->check(CLI::ExistingFile);
  sub->add_option("--out", o->run.out_dir, "run folder: metrics.csv/json, curves.png, checkpoints (default runs/<spec name>)");
  sub->add_option("--epochs", o->run.epochs, "epochs (default: the spec's)")->check(CLI::PositiveNumber);
  sub->add_option("--subset", o->run.train_subset, "train on a seeded random N training images")->check(CLI::PositiveNumber);
  sub->add_option("--test-subset", o->run.test_subset, "evaluate on a seeded random N test (and validation) images")
      ->check(CLI::PositiveNumber);
  sub->add_option("--resume", o->run.resume, "continue an interrupted run from its checkpoint")->check(CLI::ExistingFile);
  sub->add_option("--threads", o->run.threads, "worker threads (default: the spec's, else every core)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--seed", o->seed, "seed for param init and batch order (default: the spec's)");
  sub->add_option("--cache-dir", o->cache_dir, "compile cache folder (default: $KILN_CACHE_DIR, else ~/.cache/kiln)");
  sub->add_flag("--no-cache", o->no_cache, "neither read nor write the compile cache");
  sub->add_flag("--check-numerics", o->run.check_numerics, "check every param and state for NaN/Inf after each step");
  sub->callback([o] {
    TrainSpec spec = load_spec_or_fail(o->spec);
    spec.graph = o->graph;
    if (o->seed) spec.seed = *o->seed;
    if (!spec.optimizer.sweeps.empty())
      throw InputError(o->spec + ": the spec sweeps " + spec.optimizer.sweeps.begin()->first +
                       "; `kiln reproduce` runs sweeps (kiln train runs one setting)");
    RunOptions run = o->run;
    run.cache_dir = o->no_cache ? "" : !o->cache_dir.empty() ? o->cache_dir : codegen::default_cache_dir();
    run.stop = install_interrupt_flag();
    RunOutcome r = run_training(spec, run);
    if (r.result.interrupted) {
      std::printf("interrupted after step %lld; resume with: kiln train %s %s --resume %s\n",
                  static_cast<long long>(r.result.steps), o->graph.c_str(), o->spec.c_str(),
                  r.result.checkpoint.c_str());
      std::fflush(stdout);
      std::exit(130);
    }
    std::printf("done: %lld steps in %.1f s (compile %.1f s); metrics, curves.png and final.ckpt in %s\n",
                static_cast<long long>(r.result.steps), r.total_seconds, r.compile_seconds, r.out_dir.c_str());
    if (r.confusion) std::printf("test confusion matrix (rows: truth, columns: prediction):\n%s",
                                 r.confusion->to_text().c_str());
  });
}};

}  // namespace
}  // namespace kiln::cli
