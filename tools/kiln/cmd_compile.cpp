// kiln compile: JIT-compile a graph's programs (through the compile cache),
// report what it cost, and optionally check every kernel against the
// interpreter; or, with -o, write them ahead of time as an object file and a
// C header for the host or any CPU of its architecture (--target-cpu).
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "compiler/autodiff/autodiff.h"
#include "compiler/codegen/aot.h"
#include "compiler/codegen/check_numerics.h"
#include "compiler/codegen/compile_cache.h"
#include "compiler/driver/training_setup.h"
#include "compiler/codegen/programs.h"
#include "compiler/frontend/train_spec.h"
#include "compiler/codegen/host.h"
#include "compiler/codegen/jit.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/interp/interpreter.h"
#include "runtime/file_io.h"
#include "runtime/thread_pool.h"
#include "runtime/dist/data_parallel.h"
#include "tools/kiln/command.h"
#include "tools/kiln/distributed.h"

namespace kiln::cli {

Graph load_graph_or_fail(const std::string& path);

static std::string grouped(int64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

static RegisterCommand compile_cmd(30, [](CLI::App& app) {
  auto* sub = app.add_subcommand("compile", "Compile a graph to machine code (LLVM JIT for this CPU)");
  struct Opts {
    std::string file, train, out_dir, prefix, target_cpu, cache_dir;
    bool no_cache = false;
    int64_t batch = 0, check_batch = 0;
    bool stats = false, check = false, no_fusion = false, distributed = false;
    int64_t bucket_kb = 4096;
    int vector_bits = 0;
    uint64_t seed = 1;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("graph", o->file, "graph JSON file")->required()->check(CLI::ExistingFile);
  sub->add_option("--train", o->train, "training spec: also compile its train_step (optimizer, frozen params, batch)")
      ->check(CLI::ExistingFile);
  sub->add_option("--batch", o->batch,
                  "maximum batch size (the open dimension) to compile for (default: the spec's, else 64)")
      ->check(CLI::Range(1, 1 << 20));
  sub->add_flag("--stats", o->stats, "print cold compile time, kernel count and buffer bytes");
  sub->add_flag("--distributed", o->distributed,
                "with --train: the data-parallel halves (grad_step, apply_step) instead of train_step; --stats "
                "prints the gradient buckets");
  add_bucket_option(sub, o->bucket_kb);
  sub->add_flag("--no-fusion", o->no_fusion, "one kernel per graph node (to compare with the fused program)");
  sub->add_flag("--check-numerics", o->check,
                "run every kernel and compare its node with the interpreter; stop at the first that differs");
  sub->add_option("--check-batch", o->check_batch, "batch size for --check-numerics (default: the maximum)");
  sub->add_option("--seed", o->seed, "seed of the random inputs for --check-numerics");
  sub->add_option("--vector-bits", o->vector_bits, "SIMD width (default: the host's widest)")
      ->check(CLI::IsMember({0, 128, 256, 512}));
  sub->add_option("-o,--output", o->out_dir,
                  "write the programs ahead of time into this folder: PREFIX.o and PREFIX.h (link with kiln_runtime)");
  sub->add_option("--prefix", o->prefix, "symbol prefix of the -o object (default: the graph name)");
  sub->add_option("--target-cpu", o->target_cpu,
                  "LLVM CPU name to compile -o for (default: this machine's), e.g. skylake-avx512, x86-64-v3");
  sub->add_option("--cache-dir", o->cache_dir, "compile cache folder (default: $KILN_CACHE_DIR, else ~/.cache/kiln)");
  sub->add_flag("--no-cache", o->no_cache, "neither read nor write the compile cache");
  sub->callback([o] {
    if (o->out_dir.empty() && !o->target_cpu.empty() && codegen::target_for_cpu(o->target_cpu).cpu != codegen::host_target().cpu)
      throw InputError("--target-cpu " + o->target_cpu + " needs -o DIR: the JIT only runs code for this CPU (" +
                       codegen::host_target().cpu + ")");
    if (!o->out_dir.empty() && o->check) throw InputError("--check-numerics runs the JIT; it does not combine with -o");
    const std::string cache_dir = o->no_cache ? "" : !o->cache_dir.empty() ? o->cache_dir : codegen::default_cache_dir();
    std::optional<uint64_t> seed;
    Graph g = load_graph_or_fail(o->file);
    std::unique_ptr<const codegen::ProgramGraphs> graphs;
    double lr = 0.01;
    try {
      if (!o->train.empty()) {
        TrainSpec spec = expand_sweeps(load_train_spec(o->train)).front();
        apply_train_spec(g, spec);
        TrainStepConfig config = train_step_config(spec);
        if (!o->batch) o->batch = spec.full_batch ? 0 : spec.batch_size;
        if (spec.optimizer.lr > 0) lr = spec.optimizer.lr;
        seed = spec.seed;
        graphs = codegen::program_graphs(std::move(g), &config, o->distributed);
      } else {
        if (o->distributed) throw InputError("--distributed compiles a training step: it needs --train SPEC");
        graphs = codegen::program_graphs(std::move(g), nullptr);
      }
    } catch (const GraphError& e) {
      throw InputError(e.what());
    } catch (const AutodiffError& e) {
      throw InputError(e.what());
    } catch (const std::invalid_argument& e) {
      throw InputError(e.what());
    }
    if (o->batch <= 0) o->batch = 64;
    const Graph& model = graphs->model;
    codegen::CodegenOptions copts{.vector_bits = o->vector_bits, .target_cpu = o->target_cpu, .cache_dir = cache_dir};
    if (!o->out_dir.empty()) {
      lower::Program p = lower::lower_program(model.name, graphs->entries(), {.max_batch = o->batch, .fuse = !o->no_fusion});
      codegen::AotOptions aopts{o->prefix.empty() ? codegen::c_identifier_of(model.name) : o->prefix,
                                driver::aot_init_json(*graphs, p, seed), copts};
      codegen::AotResult r;
      try {
        r = codegen::compile_aot(p, aopts);
      } catch (const std::invalid_argument& e) {
        throw InputError(e.what());
      }
      std::filesystem::create_directories(o->out_dir);
      const std::string base = o->out_dir + "/" + aopts.prefix;
      write_file_atomic(base + ".o", r.object);
      write_file_atomic(base + ".h", std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(r.header.data()), r.header.size()));
      std::printf("wrote %s.o (%zu bytes) and %s.h: %s for %s (%d-bit vectors), max batch %lld\n", base.c_str(),
                  r.object.size(), base.c_str(), model.name.c_str(), r.target.cpu.c_str(), o->vector_bits ? o->vector_bits : r.target.vector_bits,
                  static_cast<long long>(o->batch));
      if (o->stats)
        std::printf("  compile: %.1f ms; cache: %s\n", r.ms,
                    cache_dir.empty() ? "off" : r.cache_hit ? ("hit (codegen skipped), " + r.cache_entry).c_str()
                                                            : ("miss, stored " + r.cache_entry).c_str());
      return;
    }
    auto cp = codegen::compile_entries(model.name, graphs->entries(), {.max_batch = o->batch, .fuse = !o->no_fusion}, copts);
    const auto& s = cp->stats();
    const auto& host = codegen::host_target();
    int bits = o->vector_bits ? o->vector_bits : host.vector_bits;
    std::string entries;
    for (auto& e : cp->loops().entries) entries += (entries.empty() ? "" : ", ") + e.name;
    std::printf("compiled %s for %s (%d-bit vectors: %d x f32), max batch %lld; entries: %s\n", model.name.c_str(),
                host.cpu.c_str(), bits, bits / 32, static_cast<long long>(o->batch), entries.c_str());
    if (o->stats) {
      std::printf("  cold compile: %.1f ms (lower %.1f, LLVM IR %.1f, optimize + machine code %.1f on %d threads; optimize %.1f ms of CPU)\n",
                  s.total_ms(), s.lower_ms, s.emit_ms, s.jit_ms, s.threads, s.optimize_cpu_ms);
      std::printf("  cache: %s\n", cache_dir.empty() ? "off"
                                    : s.cache_hit ? ("hit (codegen skipped), " + s.cache_entry).c_str()
                                                  : ("miss, stored " + s.cache_entry).c_str());
      std::printf("  kernels: %zu\n", s.kernels);
      std::printf("  buffers: arena %s bytes (sum of intermediates %s bytes), params %s bytes, state %s bytes, "
                  "constants %s bytes\n",
                  grouped(s.arena_bytes).c_str(), grouped(s.intermediate_bytes).c_str(), grouped(s.param_bytes).c_str(),
                  grouped(s.state_bytes).c_str(), grouped(s.constant_bytes).c_str());
      if (o->distributed) {
        dist::BucketPlan plan = dist::BucketPlan::of(cp->info(), o->bucket_kb * 1024);
        std::printf("  gradient buckets (reduced in this order, each summed in rank order): %zu, %s floats in all\n%s",
                    plan.buckets.size(), grouped(plan.elements).c_str(), plan.describe().c_str());
      }
    }
    if (!o->check) return;
    int64_t batch = o->check_batch ? o->check_batch : o->batch;
    if (batch > o->batch) throw InputError("--check-batch " + std::to_string(batch) + " exceeds --batch " + std::to_string(o->batch));
    Program prog(cp->info());
    auto params = interp::init_params(model);
    if (graphs->train_step) {
      auto state = initial_optimizer_state(*graphs->train_step, params);
      params.insert(state.begin(), state.end());
    }
    for (const lower::Entry& e : cp->loops().entries) {
      if (!e.graph) continue;
      auto feeds = codegen::random_feeds(e, batch, o->seed);
      if (feeds.count(kLearningRateInput)) feeds[kLearningRateInput].data = {lr};
      feeds.insert(params.begin(), params.end());
      auto report = codegen::check_numerics(*cp, prog, e.name, batch, feeds);
      if (!report.ok) throw InputError("check-numerics, entry " + e.name + ": " + report.message);
      std::printf("check-numerics %s: %d kernels, %d nodes match the interpreter (batch %lld)\n", e.name.c_str(),
                  report.kernels_run, report.nodes_checked, static_cast<long long>(batch));
    }
  });
});

}  // namespace kiln::cli
