#include "runtime/thread_pool.h"

namespace kiln {

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

static void chunk(int64_t n, int parts, int index, int64_t& begin, int64_t& end) {
  begin = n * index / parts;
  end = n * (index + 1) / parts;
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body) {
  parallel_for(
      n, [](void* f, int64_t b, int64_t e) { (*static_cast<const std::function<void(int64_t, int64_t)>*>(f))(b, e); },
      const_cast<std::function<void(int64_t, int64_t)>*>(&body));
}

void ThreadPool::parallel_for(int64_t n, Body body, void* closure) {
  if (n <= 0) return;
  int parts = threads();
  if (parts == 1 || n == 1) {
    body(closure, 0, n);
    return;
  }
  {
    std::lock_guard lock(mu_);
    body_ = body;
    closure_ = closure;
    n_ = n;
    pending_ = parts - 1;
    ++generation_;
  }
  wake_.notify_all();
  int64_t b, e;
  chunk(n, parts, 0, b, e);
  if (b < e) body(closure, b, e);
  std::unique_lock lock(mu_);
  done_.wait(lock, [this] { return pending_ == 0; });
  body_ = nullptr;
  closure_ = nullptr;
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    Body body;
    void* closure;
    int64_t n;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      body = body_;
      closure = closure_;
      n = n_;
    }
    int64_t b, e;
    chunk(n, threads(), index, b, e);
    if (b < e) body(closure, b, e);
    {
      std::lock_guard lock(mu_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

}  // namespace kiln
