#pragma once
// Exchange over MPI (Open MPI from Debian). Built only when CMake finds MPI
// (KILN_HAVE_MPI); kiln without it refuses --distributed with a message.
//
// Sums in rank order are a reduce-scatter and an all-gather written with
// point-to-point messages: rank j owns chunk j of the buffer, receives every
// rank's copy of it, adds them in rank order, and sends the result to all.
// Each rank sends and receives 2 (P-1)/P of the buffer, as a ring allreduce
// does, and every rank ends with the same bits. Waiting polls the requests
// against a deadline, so a peer that never sends is named, not waited for.
#include <memory>

#include "runtime/dist/exchange.h"

namespace kiln::dist {

// MPI_Init_thread once per process (MPI_THREAD_FUNNELED: only the thread
// that created it calls MPI); finalized at exit. Returns the exchange over
// MPI_COMM_WORLD; `timeout_seconds` bounds every call.
std::unique_ptr<Exchange> mpi_world(int* argc, char*** argv, double timeout_seconds);
// Whether this process runs under an MPI launcher (mpirun sets OMPI_COMM_WORLD_SIZE / PMI_SIZE).
bool launched_by_mpi();
// Ranks on this node as (local rank, local size): the first rank of a node
// compiles while the others wait, then they take its code from the cache.
std::pair<int, int> node_local_rank(Exchange& world);
// Waits (polling, with the exchange's deadline) until every rank on this node gets here.
void node_barrier(Exchange& world, const std::string& what, double timeout_seconds);
// Ends the job: every rank of MPI_COMM_WORLD exits with `code` (MPI_Abort).
[[noreturn]] void abort_job(int code);

}  // namespace kiln::dist
