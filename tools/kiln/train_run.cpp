#include "tools/kiln/train_run.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "compiler/driver/training_setup.h"
#include "compiler/codegen/host.h"
#include "compiler/frontend/graph_json.h"
#include "runtime/report/plot.h"
#include "runtime/train/predictions.h"
#include "tools/kiln/command.h"
#include "tools/kiln/distributed.h"

namespace kiln::cli {

namespace fs = std::filesystem;

Graph load_graph_or_fail(const std::string& path);

static std::atomic<bool> g_interrupted{false};

extern "C" void kiln_on_sigint(int) {
  g_interrupted.store(true);
  std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C stops at once
}

const std::atomic<bool>* install_interrupt_flag() {
  std::signal(SIGINT, kiln_on_sigint);
  return &g_interrupted;
}

static int64_t count_params(const Graph& g, bool trainable_only) {
  int64_t n = 0;
  for (NodeId p : g.params()) {
    const Node& node = g.node(p);
    if (node.attrs.value("role", std::string("param")) != "param") continue;
    if (trainable_only && !node.attrs.value("trainable", true)) continue;
    n += numel(node.type.shape);
  }
  return n;
}

static void warn(const std::string& what) { std::fprintf(stderr, "warning: %s\n", what.c_str()); }

RunOutcome run_training(const TrainSpec& spec, const RunOptions& o) {
  using Clock = std::chrono::steady_clock;
  auto t_start = Clock::now();
  RunOutcome out;
  out.out_dir = o.out_dir.empty() ? (fs::path("runs") / spec.name).string() : o.out_dir;
  DistributedJob job;
  if (o.distributed) {
    job = start_distributed(o.comm_timeout);
    out.rank = job.exchange->rank();
    out.ranks = job.exchange->size();
  }
  const bool lead = out.rank == 0;  // prints and writes files

  driver::SpecData data;
  try {
    data = driver::load_spec_data(spec, o.train_subset, o.test_subset);
  } catch (const driver::MissingDataError& e) {
    throw InputError(e.what());
  }
  out.train_size = data.train.size();
  out.validation_size = data.validation.size();
  out.test_size = data.test.size();

  Graph model = load_graph_or_fail(spec.graph);
  const std::string graph_text = read_file(spec.graph);
  const std::string spec_text = driver::spec_json_for_checkpoint(spec);
  int threads = o.threads > 0 ? o.threads : spec.threads;
  auto compile = [&] {
    return driver::compile_model(model, &spec, driver::training_max_batch(spec, data.train.size()), threads,
                                 {.cache_dir = o.cache_dir}, o.distributed || o.simulate_ranks > 0);
  };
  driver::CompiledModel m;
  if (o.distributed) {
    const codegen::HostTarget& t = codegen::host_target();
    check_same_program(*job.exchange, graph_text, spec_text,
                       t.triple + " " + t.cpu + " " + std::to_string(t.vector_bits) + " " + std::to_string(t.fma));
    // The node's cores shared among its ranks, unless threads were asked for.
    if (threads <= 0)
      threads = job.default_threads();
    m = compile_once_per_node(job, compile);
  } else {
    m = compile();
  }
  out.compile_seconds = m.compile_ms / 1000;  // graphs, lowering, LLVM (not the memory the program maps)
  out.max_batch = m.program->info().max_batch;
  {
    Graph flagged = model;
    apply_train_spec(flagged, spec);
    out.params = count_params(flagged, false);
    out.trainable_params = count_params(flagged, true);
  }
  if (lead) std::printf("%s: %lld train, %lld validation, %lld test images; %lld params (%lld trainable); compiled in %.2f s%s\n",
              spec.name.c_str(), static_cast<long long>(out.train_size), static_cast<long long>(out.validation_size),
              static_cast<long long>(out.test_size), static_cast<long long>(out.params),
              static_cast<long long>(out.trainable_params), out.compile_seconds,
              m.compiled->stats().cache_hit ? " (compile cache hit)" : "");
  std::fflush(stdout);

  train::TrainerOptions to;
  to.batch_size = spec.full_batch ? 0 : spec.batch_size;
  const int64_t per_epoch = driver::batches_per_epoch(spec, data.train.size());
  const int64_t budget = o.steps > 0 ? o.steps : o.epochs > 0 ? 0 : spec.steps;
  if (budget > 0) {
    to.max_steps = budget;
    to.epochs = (budget + per_epoch - 1) / per_epoch;
  } else {
    to.epochs = o.epochs > 0 ? o.epochs : spec.epochs;
  }
  const int64_t run_steps = to.max_steps > 0 ? to.max_steps : to.epochs * per_epoch;
  to.step_scalars = driver::step_schedule(spec, run_steps);
  to.batch_transform = driver::training_batch_transform(spec, data);
  to.seed = spec.seed;
  to.features_input = m.features_input;
  to.labels_input = m.labels_input;
  to.out_dir = out.out_dir;
  to.graph_json = graph_text;
  to.spec_json = spec_text;
  to.stop = o.stop;
  to.check_numerics = o.check_numerics;
  to.progress = o.progress && lead;
  if (!lead) to.log = nullptr;

  to.print_digest = o.print_digest;

  std::unique_ptr<dist::DataParallelRunner> runner;
  if (o.distributed || o.simulate_ranks > 0) {
    runner = std::make_unique<dist::DataParallelRunner>(
        *m.program, data.train, job.exchange,
        dist::DataParallelOptions{m.features_input, m.labels_input, o.bucket_bytes, std::max(1, o.simulate_ranks),
                                  o.overlap});
    if (!o.distributed) out.ranks = runner->ranks();
    out.buckets = runner->plan().describe();
    if (lead)
      std::printf("data-parallel over %d ranks%s (%d threads each): global batch %lld, %zu gradient buckets\n%s",
                  out.ranks, o.distributed ? "" : " simulated in this process", threads, static_cast<long long>(spec.batch_size), runner->plan().buckets.size(),
                  out.buckets.c_str());
  }
  train::Trainer trainer(*m.program, data.train, to, runner.get());
  if (data.validation.size()) trainer.add_eval_set("val", data.validation);
  if (data.test.size()) trainer.add_eval_set("test", data.test);
  if (!o.resume.empty()) {
    trainer.resume(train::load_checkpoint(o.resume));
    if (lead) std::printf("resuming from %s\n", o.resume.c_str());
  } else {
    driver::initialize(m, spec);
  }
  // Every rank starts from rank 0's bits, whatever it read or drew.
  if (o.distributed) broadcast_persistent(*job.exchange, *m.program);
  out.result = trainer.run();
  if (runner) out.timing = runner->timing();
  if (out.result.interrupted) return out;

  const auto& h = out.result.history;
  if (lead && spec.dataset == "text" && !h.empty() && std::isfinite(h.back().val_loss))
    std::printf("validation: %.4f nats = %.4f bits per character (%lld windows of %lld)\n", h.back().val_loss,
                h.back().val_loss / std::log(2.0), static_cast<long long>(out.validation_size),
                static_cast<long long>(spec.context));
  bool wants_confusion = std::find(spec.metrics.begin(), spec.metrics.end(), "confusion_matrix") != spec.metrics.end();
  if (wants_confusion)
    out.test_probabilities = o.distributed ? predict_sharded(*job.exchange, *m.program, data.test)
                                           : train::predict_all(*m.program, data.test);
  out.total_seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  if (!lead) return out;
  try {
    report::plot_training_curves(h, spec.name, (fs::path(out.out_dir) / "curves.png").string(), out.result.step_log);
  } catch (const std::exception& e) {
    warn(std::string("no curves plot: ") + e.what());
  }
  if (wants_confusion) {
    int classes = spec.labels == "binary" ? 2 : 10;
    out.confusion = report::ConfusionMatrix(classes);
    std::vector<int> pred = train::predicted_classes(out.test_probabilities), truth = train::label_classes(data.test.labels);
    for (size_t i = 0; i < pred.size(); ++i) out.confusion->add(truth[i], pred[i]);
    std::vector<std::string> labels = data.class_names;
    if (spec.labels == "binary") labels = {"0", "1"};
    std::ofstream(fs::path(out.out_dir) / "confusion.txt") << out.confusion->to_text(labels);
    std::ofstream(fs::path(out.out_dir) / "confusion.json") << out.confusion->to_json().dump(2) << "\n";
    try {
      report::plot_confusion(*out.confusion, labels, spec.name + " (test set)",
                             (fs::path(out.out_dir) / "confusion.png").string());
    } catch (const std::exception& e) {
      warn(std::string("no confusion plot: ") + e.what());
    }
  }
  out.total_seconds = std::chrono::duration<double>(Clock::now() - t_start).count();
  return out;
}

}  // namespace kiln::cli
