#pragma once
// One persistent pool of worker threads behind parallel_for, shared by JIT
// and AOT programs (generated code calls back into it through the context).
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

  int threads() const { return static_cast<int>(workers_.size()) + 1; }
  // Calls body(begin, end) over a static partition of [0, n) into at most
  // threads() contiguous chunks; the caller runs chunk 0. The partition depends
  // only on n and threads(), so results are reproducible.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& body);
  // The same without std::function: body(closure, begin, end). Allocates
  // nothing (the hot path of every compiled parallel loop).
  using Body = void (*)(void* closure, int64_t begin, int64_t end);
  void parallel_for(int64_t n, Body body, void* closure);

 private:
  void worker(int index);
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  Body body_ = nullptr;
  void* closure_ = nullptr;
  int64_t n_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

}  // namespace kiln
