#pragma once
// The job around a data-parallel `kiln train --distributed`: MPI started
// once per process, the checks every rank passes before training (same
// graph, spec and code target on every rank), compiling once per node (the
// node's first rank fills the compile cache, the others take its code), rank
// 0's params on every rank, and predictions gathered from the ranks' shards.
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "runtime/data/dataset.h"
#include "runtime/dist/exchange.h"
#include "runtime/program.h"

namespace kiln::cli {

// Per-step collectives wait this long for a peer by default (--comm-timeout).
constexpr double kDefaultCommTimeout = 20;
// Start-up (a node's first rank compiling cold) waits this long.
constexpr double kStartupTimeout = 900;

struct DistributedJob {
  dist::Exchange* exchange = nullptr;  // owned by the process (finalized by finish_distributed)
  int local_rank = 0, local_size = 1;  // on this node
  // Worker threads a rank takes unless told: the node's cores shared among its ranks.
  int default_threads() const;
};

// Throws InputError when kiln was built without MPI, or was not started by mpirun.
DistributedJob start_distributed(double comm_timeout);
// MPI_Finalize after a clean run.
void finish_distributed();
// The started job's exchange (throws std::logic_error before start_distributed).
dist::Exchange& distributed_world();
// Ends every rank of the job with `code` after printing `message` (a rank's failure).
[[noreturn]] void abort_distributed(const std::string& message, int code);

// --bucket-kb (gradient bucket size in KiB), the same for train, compile and profile.
void add_bucket_option(CLI::App* command, int64_t& bucket_kb);

// Refuses (InputError on every rank) unless every rank has rank 0's graph,
// spec and code target; the message names the ranks that differ and how.
void check_same_program(dist::Exchange& ex, const std::string& graph_text, const std::string& spec_json,
                        const std::string& target);
// Runs `compile` on this node's first rank, then on the others (which then
// find its code in the compile cache).
template <class F>
auto compile_once_per_node(const DistributedJob& job, F&& compile) -> decltype(compile());
void node_barrier(const DistributedJob& job, const std::string& what);

// Rank 0's params and state, copied to every rank.
void broadcast_persistent(dist::Exchange& ex, Program& program);
// predict over every row of `data` (as the model reads it), each rank its share, gathered on every rank.
Tensor predict_sharded(dist::Exchange& ex, Program& program, const data::Dataset& data);

template <class F>
auto compile_once_per_node(const DistributedJob& job, F&& compile) -> decltype(compile()) {
  if (job.local_rank == 0) {
    auto out = compile();
    node_barrier(job, "start-up (this node's first rank compiling)");
    return out;
  }
  node_barrier(job, "start-up (this node's first rank compiling)");
  return compile();
}

}  // namespace kiln::cli
