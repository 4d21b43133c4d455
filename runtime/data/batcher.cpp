#include "runtime/data/batcher.h"

#include <numeric>
#include <stdexcept>
#include <string>

#include "runtime/data/shuffle.h"

namespace kiln::data {

namespace {

bool shuffles(const BatcherOptions& o) { return o.shuffle && o.batch_size != BatcherOptions::kFull; }

Tensor gather_batch(const Tensor& t, const int64_t* idx, int64_t b) {
  std::vector<int64_t> shape = t.shape();
  shape[0] = b;
  Tensor out(t.dtype(), shape);
  const size_t row = t.dim(0) ? t.nbytes() / static_cast<size_t>(t.dim(0)) : 0;
  gather_rows(t.raw(), row, std::span(idx, static_cast<size_t>(b)), out.raw());
  return out;
}

}  // namespace

Batcher::Batcher(const Dataset& data, BatcherOptions options) : data_(data), opt_(options) {
  const int64_t n = data.size();
  if (opt_.batch_size < 0) throw std::invalid_argument("batcher: batch size " + std::to_string(opt_.batch_size) + " is negative");
  if (n == 0) throw std::invalid_argument("batcher: the data set is empty");
  batch_size_ = opt_.batch_size == BatcherOptions::kFull ? n : std::min(opt_.batch_size, n);
  batches_per_epoch_ = (n + batch_size_ - 1) / batch_size_;
  order_.resize(static_cast<size_t>(n));
  std::string state;
  if (shuffles(opt_)) {
    rng_.seed(opt_.seed);
    state = rng_state(rng_);
  }
  start_epoch(0, state);
  pos_ = {0, 0, epoch_state_};
  start_thread();
}

Batcher::~Batcher() { stop_thread(); }

void Batcher::start_epoch(int64_t epoch, std::string state) {
  epoch_ = epoch;
  next_ = 0;
  epoch_state_ = std::move(state);
  std::iota(order_.begin(), order_.end(), int64_t{0});
  if (shuffles(opt_)) {
    rng_ = parse_rng_state(epoch_state_);
    fisher_yates(order_, rng_);
  }
}

Batcher::Item Batcher::produce() {
  Item item;
  if (next_ == batches_per_epoch_) {
    start_epoch(epoch_ + 1, shuffles(opt_) ? rng_state(rng_) : std::string());
    item.after = {epoch_, 0, epoch_state_};
    return item;
  }
  const int64_t begin = next_ * batch_size_;
  const int64_t b = std::min(batch_size_, data_.size() - begin);
  // A full batch is a view of the data set, unless a transform rewrites it
  // or its rows are stored bytes the model does not read as they are.
  const int64_t* rows = order_.data() + begin;
  Batch batch = opt_.batch_size == BatcherOptions::kFull && !opt_.transform && !data_.decode
                    ? Batch::view(data_)
                    : Batch(data_.decode ? data_.decode(gather_batch(data_.features, rows, b))
                                         : gather_batch(data_.features, rows, b),
                            gather_batch(data_.labels, rows, b));
  if (opt_.transform) opt_.transform(batch, std::span(rows, static_cast<size_t>(b)), epoch_);
  batch.epoch = epoch_;
  batch.index = next_;
  item.batch = std::move(batch);
  ++next_;
  item.after = {epoch_, next_, epoch_state_};
  return item;
}

void Batcher::producer_loop() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || !slot_; });
    if (stop_) return;
    if (opt_.epochs > 0 && epoch_ >= opt_.epochs) {
      // Past the last epoch: no batch of an epoch that never runs is
      // gathered (or transformed); a call for one fails instead of waiting.
      slot_ = Item{std::nullopt, BatchPosition{epoch_, 0, epoch_state_},
                   std::make_exception_ptr(std::logic_error("no batches after the last epoch"))};
      cv_.notify_all();
      cv_.wait(lock, [&] { return stop_; });
      return;
    }
    lock.unlock();
    Item item;
    try {
      item = produce();
    } catch (...) {
      item.error = std::current_exception();
    }
    lock.lock();
    slot_ = std::move(item);
    cv_.notify_all();
  }
}

void Batcher::start_thread() {
  if (!opt_.prefetch) return;
  stop_ = false;
  thread_ = std::thread([this] { producer_loop(); });
}

void Batcher::stop_thread() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::optional<Batch> Batcher::next() {
  Item item;
  if (opt_.prefetch) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return slot_.has_value(); });
    item = std::move(*slot_);
    slot_.reset();
    cv_.notify_all();
  } else {
    item = produce();
  }
  if (item.error) std::rethrow_exception(item.error);
  pos_ = item.after;
  return std::move(item.batch);
}

BatchPosition Batcher::position() const { return pos_; }

void Batcher::restore(const BatchPosition& pos) {
  if (pos.epoch < 0 || pos.next_batch < 0 || pos.next_batch > batches_per_epoch_)
    throw std::invalid_argument("batcher: cannot resume at epoch " + std::to_string(pos.epoch) + " batch " +
                                std::to_string(pos.next_batch) + ": an epoch has " +
                                std::to_string(batches_per_epoch_) + " batches");
  if (shuffles(opt_) == pos.rng_state.empty())
    throw std::invalid_argument(std::string("batcher: the saved position ") +
                                (pos.rng_state.empty() ? "has no shuffle state but this batcher shuffles"
                                                       : "has a shuffle state but this batcher does not shuffle"));
  if (shuffles(opt_)) parse_rng_state(pos.rng_state);  // validate before touching anything
  stop_thread();
  slot_.reset();
  start_epoch(pos.epoch, pos.rng_state);
  next_ = pos.next_batch;
  pos_ = pos;
  start_thread();
}

}  // namespace kiln::data
