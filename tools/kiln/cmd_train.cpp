// kiln train: train a graph with a training spec, compiled (JIT) steps; with
// --distributed, data-parallel over the ranks of an MPI job.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "compiler/codegen/compile_cache.h"
#include "compiler/driver/training_setup.h"
#include "tools/kiln/command.h"
#include "tools/kiln/distributed.h"
#include "tools/kiln/train_run.h"

namespace kiln::cli {

// A spec file, its problems as an InputError (exit 1) naming the file.
TrainSpec load_spec_or_fail(const std::string& path) {
  try {
    return load_train_spec(path);
  } catch (const GraphError& e) {
    throw InputError(e.what());
  }
}

namespace {

struct Opts {
  std::vector<std::string> files;  // [GRAPH] SPEC
  std::string graph, spec;
  RunOptions run;
  std::optional<uint64_t> seed;
  std::string cache_dir;
  bool no_cache = false;
  int64_t bucket_kb = 4096;
};

// Each rank's step times, gathered; rank 0 prints them and writes dist_timing.json.
void report_timing(const RunOutcome& r) {
  dist::Exchange& ex = distributed_world();
  const dist::StepTiming& t = r.timing;
  double mine[4] = {t.compute, t.wait, t.communicate, static_cast<double>(t.steps)};
  auto all = ex.all_gather(std::span(reinterpret_cast<const uint8_t*>(mine), sizeof mine), "gathering step times");
  if (r.rank != 0) return;
  nlohmann::json j = nlohmann::json::array();
  std::printf("per step, each rank: compute (grad_step + apply_step), waiting for the slowest rank (the loss "
              "exchange), communication (gradient buckets, running statistics):\n");
  for (size_t k = 0; k < all.size(); ++k) {
    double v[4];
    std::memcpy(v, all[k].data(), sizeof v);
    const double steps = std::max(1.0, v[3]), total = v[0] + v[1] + v[2];
    std::printf("  rank %zu: compute %.2f ms, wait %.2f ms, communicate %.2f ms (%.1f%% of the step communicating, "
                "%.1f%% waiting)\n",
                k, 1e3 * v[0] / steps, 1e3 * v[1] / steps, 1e3 * v[2] / steps, total > 0 ? 100 * v[2] / total : 0.0,
                total > 0 ? 100 * v[1] / total : 0.0);
    j.push_back({{"rank", k}, {"steps", v[3]}, {"compute_s", v[0]}, {"wait_s", v[1]}, {"communicate_s", v[2]}});
  }
  std::ofstream(std::filesystem::path(r.out_dir) / "dist_timing.json") << j.dump(2) << "\n";
}

void train_command(Opts o) {
  // One file: the spec, naming its graph; two: a graph replacing the spec's, then the spec.
  o.spec = o.files.back();
  o.graph = o.files.size() == 2 ? o.files.front() : "";
  TrainSpec spec = load_spec_or_fail(o.spec);
  if (!o.graph.empty()) spec.graph = o.graph;
  if (o.seed) spec.seed = *o.seed;
  if (!spec.optimizer.sweeps.empty())
    throw InputError(o.spec + ": the spec sweeps " + spec.optimizer.sweeps.begin()->first +
                     "; `kiln reproduce` runs sweeps (kiln train runs one setting)");
  RunOptions run = o.run;
  run.cache_dir = o.no_cache ? "" : !o.cache_dir.empty() ? o.cache_dir : codegen::default_cache_dir();
  run.stop = install_interrupt_flag();
  run.bucket_bytes = o.bucket_kb * 1024;
  RunOutcome r = run_training(spec, run);
  if (r.result.interrupted) {
    if (r.rank == 0)
      std::printf("interrupted after step %lld; resume with: kiln train %s%s%s --resume %s\n",
                  static_cast<long long>(r.result.steps), o.graph.c_str(), o.graph.empty() ? "" : " ", o.spec.c_str(),
                  r.result.checkpoint.c_str());
    std::fflush(stdout);
    if (run.distributed) finish_distributed();
    std::exit(130);
  }
  if (run.distributed) report_timing(r);
  if (r.rank != 0) return;
  std::printf("done: %lld steps in %.1f s (compile %.1f s); metrics, curves.png and final.ckpt in %s\n",
              static_cast<long long>(r.result.steps), r.total_seconds, r.compile_seconds, r.out_dir.c_str());
  if (r.confusion) std::printf("test confusion matrix (rows: truth, columns: prediction):\n%s",
                               r.confusion->to_text().c_str());
}

RegisterCommand reg{60, [](CLI::App& app) {
  auto* sub = app.add_subcommand("train", "Train a graph as a training spec says (compiled train/eval steps)");
  auto o = std::make_shared<Opts>();
  sub->add_option("files", o->files,
                  "[GRAPH] SPEC: the training spec (kiln.train/1), which names its graph; a graph given before it "
                  "replaces the spec's")
      ->required()
      ->expected(1, 2)
      ->check(CLI::ExistingFile);
  sub->add_option("--out", o->run.out_dir, "run folder: metrics.csv/json, curves.png, checkpoints (default runs/<spec name>)");
  sub->add_option("--epochs", o->run.epochs, "epochs (default: the spec's)")->check(CLI::PositiveNumber);
  sub->add_option("--steps", o->run.steps, "end after this many optimizer steps (default: the spec's epochs or steps)")
      ->check(CLI::PositiveNumber);
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
  sub->add_flag("--distributed", o->run.distributed,
                "data-parallel over the ranks of an MPI job: mpirun -np N kiln train GRAPH SPEC --distributed "
                "(each rank's threads default to the node's cores shared among its ranks)");
  sub->add_option("--comm-timeout", o->run.comm_timeout,
                  "--distributed: seconds a rank waits for a peer before the job ends naming it (default 20)")
      ->check(CLI::PositiveNumber);
  add_bucket_option(sub, o->bucket_kb);
  sub->add_flag("--no-overlap", [o](int64_t) { o->run.overlap = false; },
                "--distributed: reduce the gradients after the backward pass, not during it");
  sub->add_option("--simulate-ranks", o->run.simulate_ranks,
                  "run the data-parallel step of N ranks in this one process (each shard in turn, gradients summed "
                  "in rank order): the bit-exact reference for mpirun -np N ... --distributed")
      ->check(CLI::PositiveNumber);
  sub->add_flag("--print-params-digest", o->run.print_digest, "print the SHA-256 of every param and state after each epoch");
  sub->callback([o] {
    if (o->run.distributed && o->run.simulate_ranks > 0)
      throw CLI::ValidationError("--simulate-ranks", "runs in one process: leave out --distributed");
    if (!o->run.distributed) {
      // N copies training alone would all write the same run folder.
      const char* ranks = std::getenv("OMPI_COMM_WORLD_SIZE");
      if (ranks && std::atoi(ranks) > 1)
        throw InputError("kiln train was started by mpirun with " + std::string(ranks) +
                         " ranks but without --distributed: add --distributed, or run one process");
      return train_command(*o);
    }
    // A rank that fails ends the job at once (the others would wait for it until their timeout).
    try {
      train_command(*o);
    } catch (const std::exception& e) {
      abort_distributed(e.what(), 1);
    }
    finish_distributed();
  });
}};

}  // namespace
}  // namespace kiln::cli
