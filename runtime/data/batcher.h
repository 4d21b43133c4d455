#pragma once
// Batches over an in-memory Dataset: seeded per-epoch shuffling, the last
// partial batch kept, or one "full" batch of everything; a background thread
// gathers the next batch into its own contiguous buffers while the caller
// runs the current step.
//
// Order: epoch e's order is fisher_yates (see shuffle.h) of 0..N-1 drawn from
// one std::mt19937_64(seed) that carries over from epoch to epoch; without
// shuffling it is 0..N-1. Batch i holds rows [i*B, min((i+1)*B, N)) of that order.
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <thread>
#include <vector>

#include "runtime/data/batch_position.h"
#include "runtime/data/dataset.h"

namespace kiln::data {

class Batch;

struct BatcherOptions {
  static constexpr int64_t kFull = 0;
  int64_t batch_size = 32;  // kFull: one batch of the whole data set per epoch
  bool shuffle = true;      // ignored for kFull (a single batch's row order changes nothing)
  uint64_t seed = 0;
  bool prefetch = true;     // gather the next batch on a background thread
  int64_t epochs = 0;       // epochs to be drawn (0: no end): nothing is gathered past the last
  // Applied to every gathered batch on the gathering thread (augmentation,
  // text windows): `rows` are the batch's row indices in the data set. It
  // must be a function of (rows, epoch) and the data alone, so a batch is
  // the same on any thread count and after a resume.
  std::function<void(Batch& batch, std::span<const int64_t> rows, int64_t epoch)> transform;
};

// A batch owns its gathered rows, except a kFull batch, which refers to the
// data set itself (no copy of the whole set per epoch).
class Batch {
 public:
  Batch() = default;
  Batch(Tensor features, Tensor labels) : own_features_(std::move(features)), own_labels_(std::move(labels)) {}
  static Batch view(const Dataset& d) {
    Batch b;
    b.view_features_ = &d.features;
    b.view_labels_ = &d.labels;
    return b;
  }
  const Tensor& features() const { return view_features_ ? *view_features_ : own_features_; }  // [b, ...]
  const Tensor& labels() const { return view_labels_ ? *view_labels_ : own_labels_; }          // [b] or [b, K]
  // A gathered batch's own tensors, for a transform to rewrite in place.
  Tensor& own_features() { return own_features_; }
  Tensor& own_labels() { return own_labels_; }
  int64_t size() const { return features().dim(0); }

  int64_t epoch = 0, index = 0;

 private:
  Tensor own_features_, own_labels_;
  const Tensor* view_features_ = nullptr;
  const Tensor* view_labels_ = nullptr;
};

class Batcher {
 public:
  // `data` must outlive the batcher (batches are gathered from it in the background).
  Batcher(const Dataset& data, BatcherOptions options);
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  int64_t batch_size() const { return batch_size_; }  // the largest batch's size

  // The next batch of the current epoch, or std::nullopt once when the epoch
  // is over (the following call starts the next epoch):
  //   while (auto b = batcher.next()) step(*b);
  std::optional<Batch> next();

  // Position of the batch the next call to next() returns.
  BatchPosition position() const;
  // Continue from a saved position. Throws std::invalid_argument when it does
  // not fit this batcher (batch index beyond the epoch, bad RNG state).
  void restore(const BatchPosition& pos);

 private:
  struct Item {
    std::optional<Batch> batch;  // empty: end of epoch
    BatchPosition after;         // position once this item is consumed
    std::exception_ptr error;
  };
  void start_epoch(int64_t epoch, std::string state);  // producer cursor
  Item produce();
  void producer_loop();
  void start_thread();
  void stop_thread();

  const Dataset& data_;
  BatcherOptions opt_;
  int64_t batch_size_ = 0, batches_per_epoch_ = 0;

  // Producer cursor (owned by the background thread while it runs).
  int64_t epoch_ = 0, next_ = 0;
  std::string epoch_state_;
  std::mt19937_64 rng_;
  std::vector<int64_t> order_;

  // Consumer side.
  BatchPosition pos_;

  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Item> slot_;
  bool stop_ = false;
};

}  // namespace kiln::data
