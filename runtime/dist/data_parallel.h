#pragma once
// Data-parallel training steps: every rank runs the same compiled program on
// its shard of each global batch (grad_step), the gradients are summed over
// ranks in rank order, bucket by bucket, and every rank applies the same
// update (apply_step), so params stay bit-identical on every rank.
//
// The batch-mean loss is the global batch's: rank r's shard of b_r samples
// contributes its gradient times b_r / B. State the forward pass updates
// (batch norm's running statistics, computed from each shard) is averaged the
// same way, so every rank keeps the same copy. Dropout draws by the sample's
// index in the global batch (the grad_step's "first_sample" input).
//
// The same runner without an Exchange simulates P ranks in one process, one
// shard after the other, and sums with the same code: the reference the
// distributed tests compare bit for bit.
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/dist/exchange.h"
#include "runtime/program.h"
#include "runtime/train/trainer.h"

namespace kiln::dist {

// Gradients grouped into buckets fixed at compile time: the grad_step's
// gradient outputs in the order its kernel schedule finishes them (so each
// bucket can go out while the backward pass computes the next), cut when a
// bucket reaches bucket_bytes.
struct BucketPlan {
  struct Slot {
    std::string name;     // the gradient output ("grad:<param>")
    int output = -1;      // its index among grad_step's outputs
    int64_t offset = 0;   // elements into the flat gradient buffer
    int64_t elements = 0;
  };
  struct Bucket {
    std::vector<Slot> slots;
    int64_t offset = 0, elements = 0;
  };
  std::vector<Bucket> buckets;
  int64_t elements = 0;              // every gradient
  std::vector<std::string> averaged;  // f32 state the gradient step updates (running statistics)
  int64_t averaged_elements = 0;

  // Throws std::runtime_error when the program has no grad_step/apply_step
  // (compiled without distributed) or a gradient is not f32.
  static BucketPlan of(const ProgramInfo& program, int64_t bucket_bytes);
  // One line a bucket: index, bytes, params.
  std::string describe() const;
};

constexpr int64_t kDefaultBucketBytes = int64_t{4} << 20;

// Rows [begin, end) of `n` that rank r of `ranks` takes: as even as it goes.
inline std::pair<int64_t, int64_t> shard_rows(int64_t n, int r, int ranks) {
  return {n * r / ranks, n * (r + 1) / ranks};
}

struct DataParallelOptions {
  std::string features_input = "x", labels_input = "labels";
  int64_t bucket_bytes = kDefaultBucketBytes;
  int simulated_ranks = 1;  // without an Exchange: the ranks simulated in this process
  // Send each gradient bucket while the backward pass computes the rest
  // (grad_step run kernel by kernel); else all after it.
  bool overlap = true;
};

// Per-step time of this rank, summed over the steps taken.
struct StepTiming {
  double compute = 0;      // grad_step + apply_step
  double wait = 0;         // the first exchange of a step (loss and counts): waiting for the slowest rank
  double communicate = 0;  // gradient buckets and averaged state, after the backward pass (what overlap leaves)
  int64_t steps = 0;
};

class DataParallelRunner final : public train::StepRunner {
 public:
  // `exchange` null: the single-process reference over options.simulated_ranks ranks.
  DataParallelRunner(Program& program, const data::Dataset& train, Exchange* exchange, DataParallelOptions options);

  train::StepResult step(const data::Batch& batch, const train::StepScalars& scalars, bool stop) override;
  // Each rank evaluates its share of the rows; the sums are added in rank order.
  train::EvalResult evaluate(const data::Dataset& data) override;
  bool writes_files() const override { return rank() == 0; }
  bool stop_needs_agreement() const override { return exchange_ != nullptr; }
  // Throws when another rank's params and state differ from rank 0's.
  void check_epoch(const std::function<const std::string&()>& digest, int64_t epoch) override;

  int rank() const { return exchange_ ? exchange_->rank() : 0; }
  int ranks() const { return exchange_ ? exchange_->size() : options_.simulated_ranks; }
  const BucketPlan& plan() const { return plan_; }
  const StepTiming& timing() const { return timing_; }

 private:
  // Runs grad_step on rank r's shard of `batch` and leaves its scaled
  // contribution in grads_ and state_; returns {loss * b_r, correct}.
  std::pair<double, double> contribute(const data::Batch& batch, int r, float lr);
  void read_state(std::vector<float>& into) const;
  void write_state(const std::vector<float>& from);
  void apply(const train::StepScalars& scalars);
  std::string bucket_name(size_t k) const;

  Program& program_;
  Exchange* exchange_;
  DataParallelOptions options_;
  BucketPlan plan_;
  const EntryInfo *grad_entry_, *apply_entry_;
  int loss_i_ = -1, correct_i_ = -1;
  std::vector<float> grads_, state_;             // this rank's contribution, then the sums
  std::vector<std::span<float>> averaged_;       // the program's storage of plan_.averaged
  std::vector<int> bucket_ready_;                // per bucket: grad_step kernels after which it is final
  std::vector<int> handles_;                     // per bucket: its sum in flight (-1: not started)
  std::vector<std::vector<uint8_t>> out_storage_;  // grad_step's non-gradient outputs
  std::vector<void*> out_;
  std::vector<const void*> in_;
  StepTiming timing_;
  int64_t step_count_ = 0;
};

}  // namespace kiln::dist
