// kiln profile --distributed (under mpirun): data-parallel steps on the
// spec's data, and where each rank's step time goes: computing (grad_step and
// apply_step), waiting for the slowest rank, and moving gradients.
#include <algorithm>
#include <cstdio>
#include <cstring>

#include "compiler/codegen/compile_cache.h"
#include "compiler/driver/training_setup.h"
#include "runtime/dist/data_parallel.h"
#include "tools/kiln/command.h"
#include "tools/kiln/distributed.h"

namespace kiln::cli {

void profile_distributed(const Graph& model, const TrainSpec& spec, int steps, int threads, int64_t bucket_bytes,
                         bool overlap) {
  DistributedJob job = start_distributed(kDefaultCommTimeout);
  dist::Exchange& ex = *job.exchange;
  const int64_t batch = spec.full_batch ? 64 : spec.batch_size;
  driver::SpecData data = driver::load_spec_data(spec, batch * (steps + 2), 1);
  if (threads <= 0) threads = job.default_threads();
  driver::CompiledModel m = compile_once_per_node(job, [&] {
    return driver::compile_model(model, &spec, batch, threads, {.cache_dir = codegen::default_cache_dir()}, true);
  });
  driver::initialize(m, spec);
  broadcast_persistent(ex, *m.program);
  dist::DataParallelRunner runner(*m.program, data.train, &ex,
                                  {m.features_input, m.labels_input, bucket_bytes, 1, overlap});
  data::BatcherOptions bo;
  bo.batch_size = batch;
  bo.seed = spec.seed;
  data::Batcher batcher(data.train, bo);
  const float lr = static_cast<float>(spec.optimizer.lr > 0 ? spec.optimizer.lr : 0.01);
  // Per timed step: compute, wait, communicate (seconds).
  std::vector<double> mine;
  for (int i = 0; i < steps + 2; ++i) {
    auto b = batcher.next();
    if (!b) throw InputError("the training set ran out of batches: it needs " + std::to_string(batch * (steps + 2)) + " samples");
    const dist::StepTiming before = runner.timing();
    runner.step(*b, train::StepScalars{lr, {}}, false);
    const dist::StepTiming& after = runner.timing();
    if (i >= 2)
      mine.insert(mine.end(), {after.compute - before.compute, after.wait - before.wait,
                               after.communicate - before.communicate});
  }
  auto all = ex.all_gather(std::span(reinterpret_cast<const uint8_t*>(mine.data()), mine.size() * sizeof(double)),
                           "gathering the profile");
  if (ex.rank() == 0) {
    std::printf("%s: data-parallel step over %d ranks x %d threads, global batch %lld, %d timed steps (after 2 untimed); "
                "gradients sent %s\n",
                model.name.c_str(), ex.size(), threads, static_cast<long long>(batch), steps,
                overlap ? "during the backward pass" : "after the backward pass (--no-overlap)");
    std::printf("gradients: %lld floats in %zu buckets; averaged state: %lld floats\n",
                static_cast<long long>(runner.plan().elements), runner.plan().buckets.size(),
                static_cast<long long>(runner.plan().averaged_elements));
    std::printf("per step, ms (mean / max over the steps): compute = grad_step + apply_step (with the sends it "
                "overlaps); wait = the loss exchange (for the slowest rank); communicate = what is left of the gradient "
                "buckets and running statistics after the backward pass\n");
    std::printf("  %-5s %17s %17s %17s %17s %8s\n", "rank", "compute", "wait", "communicate", "step", "comm %");
    for (size_t r = 0; r < all.size(); ++r) {
      std::vector<double> v(all[r].size() / sizeof(double));
      std::memcpy(v.data(), all[r].data(), all[r].size());
      double sum[4] = {0, 0, 0, 0}, top[4] = {0, 0, 0, 0};
      for (size_t i = 0; i + 2 < v.size(); i += 3) {
        double step = v[i] + v[i + 1] + v[i + 2];
        double parts[4] = {v[i], v[i + 1], v[i + 2], step};
        for (int k = 0; k < 4; ++k) sum[k] += parts[k], top[k] = std::max(top[k], parts[k]);
      }
      const double n = std::max<double>(1, static_cast<double>(v.size() / 3));
      std::printf("  %-5zu", r);
      for (int k = 0; k < 4; ++k) std::printf("   %6.2f / %6.2f", 1e3 * sum[k] / n, 1e3 * top[k]);
      std::printf(" %7.1f%%\n", sum[3] > 0 ? 100 * (sum[1] + sum[2]) / sum[3] : 0.0);
    }
  }
  finish_distributed();
}

}  // namespace kiln::cli
