#include "runtime/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "runtime/float_mode.h"

namespace kiln {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Orders this thread's non-temporal stores (kernels write large outputs with
// them) before what follows, as other threads must see them.
inline void fence_streamed_stores() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_sfence();
#endif
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void chunk(int64_t n, int parts, int index, int64_t& begin, int64_t& end) {
  begin = n * index / parts;
  end = n * (index + 1) / parts;
}

}  // namespace

int64_t ThreadPool::spin_us() {
  static const int64_t us = [] {
    const char* env = std::getenv("KILN_SPIN_US");
    return env && *env ? std::max<int64_t>(0, std::atoll(env)) : int64_t{300};
  }();
  return us;
}

template <class T>
T ThreadPool::await_change(const std::atomic<T>& value, T old) {
  T now = value.load(std::memory_order_acquire);
  const int64_t start = spin_ns_ > 0 ? now_ns() : 0;
  for (int i = 0; now == old && spin_ns_ > 0; ++i) {
    // Pause for the first microseconds; then yield between looks: the
    // scheduler may have put the thread we wait for on this very core (a
    // woken thread lands beside its waker), and a pure spin would keep it
    // off until the spin ends (measured: every hand-off then took twice the spin).
    if ((i & 15) == 15) {
      const int64_t spent = now_ns() - start;
      if (spent > spin_ns_) break;
      if (spent > 2000) std::this_thread::yield();
    } else {
      cpu_relax();
    }
    now = value.load(std::memory_order_acquire);
  }
  if (now != old) return now;
  // Sleep. sleepers_ is raised before `value` is read again (both seq_cst),
  // and wake_sleepers reads sleepers_ after the change: either this thread
  // sees the new value, or the waker sees it asleep and takes the lock.
  std::unique_lock lock(mu_);
  sleepers_.fetch_add(1);
  wake_.wait(lock, [&] { return (now = value.load()) != old; });
  sleepers_.fetch_sub(1);
  return now;
}

void ThreadPool::wake_sleepers() {
  if (sleepers_.load() == 0) return;
  { std::lock_guard lock(mu_); }  // a sleeper between its check and its wait holds the lock
  wake_.notify_all();
}

ThreadPool::ThreadPool(int threads) : threads_(std::max(threads, 1)), spin_ns_(spin_us() * 1000) {
  static std::atomic<uint64_t> pools{0};
  serial_ = ++pools;
  job_.store(static_cast<uint32_t>(threads_));  // generation 0: nothing to claim
  // Each worker keeps to one core of those the process may use (worker i to
  // the i-th), and a caller found on a worker's core moves to the others.
  // Unpinned, a worker woken while its core sleeps lands on its waker's core
  // (on a VM an idle vCPU counts as busy), and the chunks then ran one after
  // the other there: 30x slower for a small GEMM. KILN_PIN_THREADS=0 leaves
  // every thread where the scheduler puts it.
  std::vector<int> cpus;
#if defined(__linux__)
  const char* pin = std::getenv("KILN_PIN_THREADS");
  cpu_set_t allowed;
  if (!(pin && std::string(pin) == "0") && sched_getaffinity(0, sizeof allowed, &allowed) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  // Pinning only when the pool spans exactly the cores the process may use
  // (kiln's default: a thread per core). A smaller pool leaves its threads
  // free: other pools or processes (MPI ranks started unbound) may want the
  // other cores, and every pool pinning to the same first cores would pile them up.
  if (cpus.size() != static_cast<size_t>(threads)) cpus.clear();
#endif
  for (int i = 1; i < threads; ++i) {
    workers_.emplace_back([this] { worker(); });
#if defined(__linux__)
    if (!cpus.empty()) {
      const int cpu = cpus[static_cast<size_t>(i)];
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      pthread_setaffinity_np(workers_.back().native_handle(), sizeof one, &one);  // best effort
      worker_cpus_.push_back(cpu);
    }
#endif
  }
}

void ThreadPool::steer_caller() {
#if defined(__linux__)
  if (worker_cpus_.empty()) return;
  // The first call keeps the caller off the workers' cores from then on (a
  // caller merely found off them could still wander onto one mid-job: seen
  // under ctest -j2); later calls only check it is still off them.
  thread_local uint64_t steered_for = 0;  // the pool (by serial) that last steered this thread
  const int here = sched_getcpu();
  if (steered_for == serial_ && std::find(worker_cpus_.begin(), worker_cpus_.end(), here) == worker_cpus_.end())
    return;
  steered_for = serial_;
  cpu_set_t before, others;
  if (sched_getaffinity(0, sizeof before, &before) != 0) return;
  others = before;
  for (int cpu : worker_cpus_) CPU_CLR(cpu, &others);
  if (CPU_COUNT(&others) == 0 || sched_setaffinity(0, sizeof others, &others) != 0) return;
  if (!steered_) {  // the first time: what the destructor gives back
    steered_ = true;
    steered_thread_ = std::this_thread::get_id();
    for (int c = 0; c < CPU_SETSIZE && c < static_cast<int>(steered_from_.size()); ++c)
      steered_from_[static_cast<size_t>(c)] = CPU_ISSET(c, &before);
  }
#endif
}

ThreadPool::~ThreadPool() {
#if defined(__linux__)
  if (steered_ && steered_thread_ == std::this_thread::get_id()) {
    cpu_set_t before;
    CPU_ZERO(&before);
    for (size_t c = 0; c < steered_from_.size() && c < CPU_SETSIZE; ++c)
      if (steered_from_[c]) CPU_SET(c, &before);
    sched_setaffinity(0, sizeof before, &before);
  }
#endif
  stop_.store(true);
  // A new generation with nothing to claim: workers wake, see stop_ and leave.
  const uint32_t next = static_cast<uint32_t>(job_.load() >> 32) + 1;
  job_.store(uint64_t{next} << 32 | static_cast<uint32_t>(threads()));
  wake_sleepers();
  for (auto& t : workers_) t.join();
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body) {
  parallel_for(
      n, [](void* f, int64_t b, int64_t e) { (*static_cast<const std::function<void(int64_t, int64_t)>*>(f))(b, e); },
      const_cast<std::function<void(int64_t, int64_t)>*>(&body));
}

void ThreadPool::parallel_for(int64_t n, Body body, void* closure) {
  if (n <= 0) return;
  const int parts = threads();
  if (parts == 1 || n == 1) {
    body(closure, 0, n);
    return;
  }
  // Kernels store outputs past the caches (non-temporal stores, emit_store):
  // such stores are ordered only by a fence, before other threads read them
  // (here: what the caller wrote before the job; below: each chunk's).
  fence_streamed_stores();
  steer_caller();
  // Every chunk of the previous job has finished (the caller waited for it),
  // so nobody reads the job while it is rewritten; a late worker still holding
  // the previous word fails its claim.
  body_ = body;
  closure_ = closure;
  n_ = n;
  float_mode_ = float_mode();
  done_.store(0, std::memory_order_relaxed);
  const uint32_t generation = static_cast<uint32_t>(job_.load(std::memory_order_relaxed) >> 32) + 1;
  // Published with chunk 0 claimed: the caller's, as when chunks were
  // assigned (it is the thread whose caches hold what the job reads).
  job_.store(uint64_t{generation} << 32 | 1);  // (seq_cst: ordered before wake_sleepers' read)
  wake_sleepers();
  int64_t b, e;
  chunk(n, parts, 0, b, e);
  if (b < e) body(closure, b, e);
  fence_streamed_stores();
  done_.fetch_add(1);
  uint64_t last;
  const int extra = run_chunks(generation, last);
  const int64_t wait_from = now_ns();
  for (int finished = done_.load(std::memory_order_acquire); finished != parts;)
    finished = await_change(done_, finished);
  jobs_.fetch_add(1, std::memory_order_relaxed);
  barrier_ns_.fetch_add(now_ns() - wait_from, std::memory_order_relaxed);
  if (extra > 0) caller_extra_chunks_.fetch_add(extra, std::memory_order_relaxed);
}

int ThreadPool::run_chunks(uint32_t generation, uint64_t& word) {
  const uint32_t parts = static_cast<uint32_t>(threads());
  int ran = 0;
  word = job_.load(std::memory_order_acquire);
  while (static_cast<uint32_t>(word >> 32) == generation && static_cast<uint32_t>(word) < parts) {
    if (!job_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
    // (a worker keeps the last job's mode: it runs nothing but chunks)
    if (!same_float_controls(float_mode(), float_mode_)) set_float_mode(float_mode_);
    int64_t b, e;
    chunk(n_, static_cast<int>(parts), static_cast<int>(static_cast<uint32_t>(word)), b, e);
    if (b < e) body_(closure_, b, e), ++ran;
    fence_streamed_stores();
    if (done_.fetch_add(1) + 1 == static_cast<int>(parts)) wake_sleepers();  // the caller may sleep
    word = job_.load(std::memory_order_acquire);
  }
  return ran;
}

ThreadPool::Stats ThreadPool::stats() const {
  return {jobs_.load(std::memory_order_relaxed), barrier_ns_.load(std::memory_order_relaxed),
          worker_busy_ns_.load(std::memory_order_relaxed), caller_extra_chunks_.load(std::memory_order_relaxed)};
}

void ThreadPool::reset_stats() {
  jobs_ = 0;
  barrier_ns_ = 0;
  worker_busy_ns_ = 0;
  caller_extra_chunks_ = 0;
}

void ThreadPool::worker() {
  const uint32_t parts = static_cast<uint32_t>(threads());
  // The constructor's word: a job published (or the pool stopped) before
  // this thread got here is a change from it.
  uint64_t seen = parts;
  for (;;) {
    uint64_t word = await_change(job_, seen);
    if (stop_.load(std::memory_order_acquire)) return;
    const int64_t from = now_ns();
    int ran = 0;
    // The job the word names, then any job published while this one ran
    // whose chunks are still open (nobody else would wake this thread for it).
    do ran += run_chunks(static_cast<uint32_t>(word >> 32), word);
    while (static_cast<uint32_t>(word) < parts && !stop_.load(std::memory_order_acquire));
    if (ran > 0) worker_busy_ns_.fetch_add(now_ns() - from, std::memory_order_relaxed);
    // The destructor's word may be the one just seen: waiting for it to
    // change would wait forever.
    if (stop_.load(std::memory_order_acquire)) return;
    seen = word;  // the next change of the word is the next job (or a claim in it)
  }
}

}  // namespace kiln
