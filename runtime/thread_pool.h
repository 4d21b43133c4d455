#pragma once
// One persistent pool of worker threads behind parallel_for, shared by JIT
// and AOT programs (generated code calls back into it through the context).
//
// Hand-off is by spinning first, sleeping later: a training step runs many
// short parallel kernels back to back, and waking a sleeping thread (futex,
// and on a VM an inter-processor interrupt to a halted vCPU) measured 45-80 us
// per parallel_for here, longer than a small convolution's whole GEMM. Idle
// workers and a caller waiting for its workers spin on an atomic for up to
// spin_us() microseconds, then block. A pool with a thread for every core the
// process may use pins its workers to cores of their own and moves a caller
// found on a worker's core off it (thread_pool.cpp says why).
//
// Chunks are claimed, not assigned: the partition of [0, n) is fixed, but any
// thread runs any chunk, and the caller, done with its own, takes the chunks
// no worker has started. A worker whose core is busy with another process
// (descheduled for a whole time slice, milliseconds) then costs the caller one
// more chunk, not a wait: measured on char_gpt beside a busy process, steps
// ran 10x slower when chunk i belonged to thread i. Kernels compute a chunk
// from its bounds alone, so results do not depend on who ran it.
#include <atomic>
#include <bitset>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kiln {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads <= 1: everything runs on the caller
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return threads_; }
  // Calls body(begin, end) over a static partition of [0, n) into at most
  // threads() contiguous chunks; the caller runs chunk 0. The partition depends
  // only on n and threads(), so results are reproducible.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body);
  // The same without std::function: body(closure, begin, end). Allocates
  // nothing (the hot path of every compiled parallel loop).
  using Body = void (*)(void* closure, int64_t begin, int64_t end);
  void parallel_for(int64_t n, Body body, void* closure);

  // What the pool has done since the last reset_stats() (for `kiln profile`):
  // parallel_for calls that used the workers, the time the caller spent
  // waiting for them after its own chunks, the time workers spent in chunks,
  // and the chunks the caller ran beyond one (no worker had claimed them).
  struct Stats {
    int64_t jobs = 0;
    int64_t barrier_ns = 0;
    int64_t worker_busy_ns = 0;
    int64_t caller_extra_chunks = 0;
  };
  Stats stats() const;
  void reset_stats();

  // How long an idle thread spins before it sleeps: KILN_SPIN_US, else 300 us
  // (0: sleep at once, as a pool sharing its cores with other work may want).
  static int64_t spin_us();

 private:
  void worker();
  // Waits until `value` differs from `old` (spinning, then sleeping on wake_)
  // and returns the new value; publish() changes a watched value and wakes sleepers.
  template <class T>
  T await_change(const std::atomic<T>& value, T old);
  void wake_sleepers();
  // Moves the calling thread off the workers' cores when it is on one (Linux).
  void steer_caller();
  const int threads_;  // set before any worker starts (workers read it while others are still being made)
  std::vector<int> worker_cpus_;  // the core each worker is pinned to (empty: none pinned)
  // The cores a steered caller had (given back by the destructor when that
  // thread runs it). A bitset: steering happens inside steps, which allocate nothing.
  std::bitset<1024> steered_from_;  // (glibc's CPU_SETSIZE)
  bool steered_ = false;
  uint64_t serial_ = 0;  // this pool among every pool the process made (1, 2, ...)
  std::thread::id steered_thread_;
  std::vector<std::thread> workers_;
  // Claims and runs chunks of job `generation` until none is left; returns
  // how many non-empty ones it ran, and in `word` the job word it stopped at.
  int run_chunks(uint32_t generation, uint64_t& word);
  // The job: written by parallel_for before job_ moves to a new generation
  // (release), read by a thread only after it claimed a chunk (acquire).
  Body body_ = nullptr;
  void* closure_ = nullptr;
  int64_t n_ = 0;
  uint32_t float_mode_ = 0;  // the caller's floating-point mode: its chunks run in it wherever they run
  // The job's generation (high 32 bits) and its next unclaimed chunk (low 32
  // bits) in one word: a claim is one compare-exchange that fails for a thread
  // still holding a finished job's word.
  std::atomic<uint64_t> job_{0};
  std::atomic<int> done_{0};  // chunks of the current job finished
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> jobs_{0}, barrier_ns_{0}, worker_busy_ns_{0}, caller_extra_chunks_{0};
  int64_t spin_ns_ = 0;
  // Sleeping, after the spin: threads blocked on wake_ (counted, so a
  // hand-off with nobody asleep costs no lock).
  std::mutex mu_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
};

}  // namespace kiln
