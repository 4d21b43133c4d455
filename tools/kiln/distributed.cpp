#include "tools/kiln/distributed.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <thread>

#include "runtime/data/sha256.h"
#include "runtime/dist/data_parallel.h"
#include "runtime/train/predictions.h"
#include "tools/kiln/command.h"
#ifdef KILN_HAVE_MPI
#include "runtime/dist/mpi_exchange.h"
#endif

namespace kiln::cli {

namespace {
std::unique_ptr<dist::Exchange> g_world;
}

#ifdef KILN_HAVE_MPI

DistributedJob start_distributed(double comm_timeout) {
  if (!dist::launched_by_mpi())
    throw InputError("--distributed needs an MPI launcher: mpirun -np N kiln train GRAPH SPEC --distributed");
  if (!g_world) g_world = dist::mpi_world(nullptr, nullptr, comm_timeout);
  DistributedJob job;
  job.exchange = g_world.get();
  std::tie(job.local_rank, job.local_size) = dist::node_local_rank(*g_world);
  return job;
}

void finish_distributed() { g_world.reset(); }

dist::Exchange& distributed_world() {
  if (!g_world) throw std::logic_error("the distributed job has not started");
  return *g_world;
}

void abort_distributed(const std::string& message, int code) {
  // Every rank may say it: each line names its rank.
  const bool named = message.rfind("rank ", 0) == 0 || !g_world;
  std::fprintf(stderr, "kiln: %s%s\n", named ? "" : ("rank " + std::to_string(g_world->rank()) + ": ").c_str(),
               message.c_str());
  dist::abort_job(code);
}

void node_barrier(const DistributedJob& job, const std::string& what) {
  dist::node_barrier(*job.exchange, what, kStartupTimeout);
}

#else

DistributedJob start_distributed(double) {
  throw InputError("this kiln was built without MPI, so it cannot train --distributed: install libopenmpi-dev and "
                   "openmpi-bin (tools/setup.sh does) and rebuild");
}
void finish_distributed() {}
dist::Exchange& distributed_world() { throw std::logic_error("this kiln was built without MPI"); }
void abort_distributed(const std::string& message, int code) {
  std::fprintf(stderr, "kiln: %s\n", message.c_str());
  std::exit(code);
}
void node_barrier(const DistributedJob&, const std::string&) {}

#endif

int DistributedJob::default_threads() const {
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / std::max(1, local_size));
}

void add_bucket_option(CLI::App* command, int64_t& bucket_kb) {
  command->add_option("--bucket-kb", bucket_kb, "--distributed: gradient bucket size in KiB (default 4096)")
      ->check(CLI::PositiveNumber);
}

void check_same_program(dist::Exchange& ex, const std::string& graph_text, const std::string& spec_json,
                        const std::string& target) {
  // What each rank runs, as three digests: graph, spec, code target.
  std::vector<uint8_t> mine;
  for (const std::string* part : {&graph_text, &spec_json, &target}) {
    std::string d = data::sha256_hex(std::span(reinterpret_cast<const uint8_t*>(part->data()), part->size()));
    mine.insert(mine.end(), d.begin(), d.end());
  }
  constexpr size_t kDigest = 64;
  auto all = ex.all_gather(mine, "the start-up check of every rank's program");
  std::string problems;
  const char* what[] = {"graph", "training spec", "code target (CPU and vector width: ranks would compute different bits)"};
  for (size_t r = 1; r < all.size(); ++r)
    for (size_t k = 0; k < 3; ++k)
      if (all[r].size() != mine.size() || std::memcmp(all[r].data() + kDigest * k, all[0].data() + kDigest * k, kDigest) != 0)
        problems += "\n  rank " + std::to_string(r) + "'s " + what[k] + " differs from rank 0's";
  if (!problems.empty())
    throw InputError("the ranks would not train the same program (every rank must get the same graph, spec and "
                     "target):" + problems);
}

void broadcast_persistent(dist::Exchange& ex, Program& program) {
  for (const TensorInfo& t : program.info().persistent) {
    auto* p = static_cast<uint8_t*>(program.persistent(t.name));
    ex.broadcast(std::span(p, static_cast<size_t>(t.bytes(1))), "sending rank 0's '" + t.name + "'");
  }
}

Tensor predict_sharded(dist::Exchange& ex, Program& program, const data::Dataset& data) {
  const int64_t n = data.size();
  const auto [begin, end] = dist::shard_rows(n, ex.rank(), ex.size());
  std::vector<int64_t> rows(static_cast<size_t>(end - begin));
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = begin + static_cast<int64_t>(i);
  // (stored rows, decoded a batch at a time by predict_all)
  Tensor mine = end > begin ? train::predict_all(program, data.gather(rows)) : Tensor();
  auto bytes = std::span(static_cast<const uint8_t*>(mine.raw()), end > begin ? mine.nbytes() : 0);
  auto all = ex.all_gather(bytes, "gathering predictions");
  int64_t classes = 0;
  for (const TensorInfo& t : program.entry("predict")->outputs) classes = t.shape.back();
  Tensor out(ElemType::f32, {n, classes});
  size_t at = 0;
  for (auto& b : all) {
    if (at + b.size() > out.nbytes()) throw std::runtime_error("gathered predictions exceed the test set");
    std::memcpy(static_cast<uint8_t*>(out.raw()) + at, b.data(), b.size());
    at += b.size();
  }
  return out;
}

}  // namespace kiln::cli
