// The runtime's thread pool: every index exactly once, through the spinning
// and the sleeping hand-off; chunks claimed, so a worker that cannot run
// leaves its chunk to the caller; workers on cores of their own; the
// caller's cores given back.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>
#include <chrono>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include "runtime/thread_pool.h"
#if defined(__linux__)
#include "tests/unit/two_cores.h"
#endif

using kiln::ThreadPool;
namespace test = kiln::test;

namespace {
// Runs parallel_for(n) and checks that every index was visited exactly once.
void check_cover(ThreadPool& pool, int64_t n) {
  std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
  pool.parallel_for(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(i)].fetch_add(1);
  });
  for (int64_t i = 0; i < n; ++i) {
    INFO("index " << i << " of " << n);
    REQUIRE(seen[static_cast<size_t>(i)].load() == 1);
  }
}
}  // namespace

TEST_CASE("thread pool: every index exactly once, back to back and after the workers fell asleep") {
  for (int threads : {1, 2, 3, 4}) {
    INFO(threads << " threads");
    ThreadPool pool(threads);
    // Back to back: the workers are still spinning from the last job.
    for (int round = 0; round < 2000; ++round) check_cover(pool, 1 + round % 13);
    // Past the spin: each job finds the workers asleep and must wake them.
    for (int round = 0; round < 5; ++round) {
      std::this_thread::sleep_for(std::chrono::microseconds(ThreadPool::spin_us() + 2000));
      check_cover(pool, 8);
    }
  }
}

TEST_CASE("thread pool: chunks are contiguous, in order, the caller's first") {
  ThreadPool pool(3);
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> caller_ran_first_chunk{false};
  pool.parallel_for(10, [&](int64_t b, int64_t e) {
    std::lock_guard lock(mu);
    chunks.emplace_back(b, e);
    if (b == 0 && std::this_thread::get_id() == caller) caller_ran_first_chunk = true;
  });
  std::sort(chunks.begin(), chunks.end());
  CHECK(chunks == std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {3, 6}, {6, 10}});
  CHECK(caller_ran_first_chunk.load());
}

// Runs a two-chunk job whose chunk 0 (the caller's) waits until chunk 1 has
// started elsewhere: chunk 1 then cannot be the caller's, whatever the timing.
template <class Chunk1>
void with_worker_chunk(ThreadPool& pool, Chunk1 chunk1) {
  std::atomic<bool> started{false};
  pool.parallel_for(2, [&](int64_t b, int64_t) {
    if (b == 0) {
      while (!started.load()) std::this_thread::yield();
    } else {
      started = true;
      chunk1();
    }
  });
}

TEST_CASE("thread pool: stats count hand-offs, the caller's wait for workers and the workers' busy time") {
  ThreadPool pool(2);
  pool.reset_stats();
  // The worker's chunk takes 20 ms after the caller's ends: the caller waits
  // about 20 ms. (Long enough that a busy machine delaying either thread by a
  // few milliseconds, as ctest -j2 does, cannot break the bounds below.)
  with_worker_chunk(pool, [] { std::this_thread::sleep_for(std::chrono::milliseconds(20)); });
  pool.parallel_for(1, [](int64_t, int64_t) {});  // one index: runs on the caller, no hand-off
  ThreadPool::Stats st = pool.stats();
  CHECK(st.jobs == 1);
  CHECK(st.worker_busy_ns >= 20'000'000);
  CHECK(st.barrier_ns >= 10'000'000);
  CHECK(st.barrier_ns <= st.worker_busy_ns + 15'000'000);
  CHECK(st.caller_extra_chunks == 0);
  pool.reset_stats();
  st = pool.stats();
  CHECK(st.jobs == 0);
  CHECK(st.barrier_ns == 0);
  CHECK(st.worker_busy_ns == 0);
}

#if defined(__linux__)
TEST_CASE("thread pool: a worker that cannot run leaves its chunk to the caller, same partition") {
  // The whole process on one core: the worker runs only when the caller
  // gives the core up, so the caller, done with chunk 0, finds chunk 1
  // unclaimed and runs it instead of waiting out the worker's time slice.
  cpu_set_t before, one;
  REQUIRE(sched_getaffinity(0, sizeof before, &before) == 0);
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  REQUIRE(sched_setaffinity(0, sizeof one, &one) == 0);
  {
    ThreadPool pool(2);  // (one allowed core for two threads: nothing pinned)
    pool.reset_stats();
    const auto caller = std::this_thread::get_id();
    int64_t by_caller = 0;
    for (int round = 0; round < 300; ++round) {
      std::mutex mu;
      std::vector<std::pair<int64_t, int64_t>> chunks;
      int64_t caller_chunks = 0;
      pool.parallel_for(9, [&](int64_t b, int64_t e) {
        std::lock_guard lock(mu);
        chunks.emplace_back(b, e);
        if (std::this_thread::get_id() == caller) ++caller_chunks;
      });
      std::sort(chunks.begin(), chunks.end());
      INFO("round " << round);
      REQUIRE(chunks == std::vector<std::pair<int64_t, int64_t>>{{0, 4}, {4, 9}});  // whoever ran them
      by_caller += caller_chunks - 1;
    }
    const ThreadPool::Stats st = pool.stats();
    CHECK(st.jobs == 300);
    CHECK(st.caller_extra_chunks == by_caller);
    CHECK(st.caller_extra_chunks > 0);
    MESSAGE("the caller ran the worker's chunk in " << st.caller_extra_chunks << " of 300 jobs");
  }
  REQUIRE(sched_setaffinity(0, sizeof before, &before) == 0);
}
#endif

#if defined(__linux__)
TEST_CASE("thread pool: a worker runs on its own core, the caller off it, and the caller's cores come back") {
  test::TwoCores cores;
  if (!cores.skip_reason.empty()) {
    MESSAGE("skipped: " << cores.skip_reason);
    return;
  }
  {
    ThreadPool pool(2);
    for (int round = 0; round < 50; ++round) {
      std::atomic<int> caller_cpu{sched_getcpu()}, worker_cpu{-1};
      with_worker_chunk(pool, [&] { worker_cpu = sched_getcpu(); });
      caller_cpu = sched_getcpu();
      INFO("round " << round);
      REQUIRE(worker_cpu.load() >= 0);
      CHECK(caller_cpu.load() != worker_cpu.load());
    }
  }
  cpu_set_t after;
  REQUIRE(sched_getaffinity(0, sizeof after, &after) == 0);
  CHECK(CPU_EQUAL(&cores.two, &after));  // the pool gave back what the caller had
}
#endif
