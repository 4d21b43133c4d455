#include "runtime/dist/data_parallel.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace kiln::dist {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

const EntryInfo& need(const ProgramInfo& p, const std::string& name) {
  for (const EntryInfo& e : p.entries)
    if (e.name == name) return e;
  throw std::runtime_error("program '" + p.name + "' has no " + name +
                           " entry: data-parallel training needs a program compiled for it (--distributed)");
}

constexpr const char* kGradPrefix = "grad:";

}  // namespace

BucketPlan BucketPlan::of(const ProgramInfo& program, int64_t bucket_bytes) {
  const EntryInfo& grad = need(program, "grad_step");
  need(program, "apply_step");
  BucketPlan plan;
  Bucket current;
  // In the order the backward pass finishes the gradients (known from the
  // kernel schedule; without it, from the last param to the first).
  std::vector<int> order;
  for (int i = static_cast<int>(grad.outputs.size()) - 1; i >= 0; --i)
    if (grad.outputs[static_cast<size_t>(i)].name.rfind(kGradPrefix, 0) == 0) order.push_back(i);
  if (grad.output_ready.size() == grad.outputs.size())
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return grad.output_ready[static_cast<size_t>(a)] < grad.output_ready[static_cast<size_t>(b)];
    });
  for (int i : order) {
    const TensorInfo& t = grad.outputs[static_cast<size_t>(i)];
    if (t.type != ElemType::f32)
      throw std::runtime_error("gradient '" + t.name + "' is " + elem_type_name(t.type) +
                               "; data-parallel training sums f32 gradients");
    const int64_t n = t.bytes(1) / 4;
    if (!current.slots.empty() && (current.elements + n) * 4 > bucket_bytes) {
      plan.buckets.push_back(std::move(current));
      current = {};
      current.offset = plan.elements;
    }
    current.slots.push_back({t.name, i, plan.elements, n});
    current.elements += n;
    plan.elements += n;
  }
  if (!current.slots.empty()) plan.buckets.push_back(std::move(current));
  for (const std::string& name : grad.writes)
    for (const TensorInfo& t : program.persistent)
      if (t.name == name && t.type == ElemType::f32) {
        plan.averaged.push_back(name);
        plan.averaged_elements += t.bytes(1) / 4;
      }
  return plan;
}

std::string BucketPlan::describe() const {
  std::string out;
  char line[160];
  for (size_t k = 0; k < buckets.size(); ++k) {
    const Bucket& b = buckets[k];
    std::snprintf(line, sizeof line, "  bucket %zu: %lld floats (%.1f KiB), %zu gradients: ", k,
                  static_cast<long long>(b.elements), static_cast<double>(b.elements) * 4 / 1024, b.slots.size());
    out += line;
    for (size_t i = 0; i < b.slots.size(); ++i) out += (i ? ", " : "") + b.slots[i].name.substr(5);
    out += "\n";
  }
  if (!averaged.empty()) {
    out += "  averaged state (" + std::to_string(averaged_elements) + " floats): ";
    for (size_t i = 0; i < averaged.size(); ++i) out += (i ? ", " : "") + averaged[i];
    out += "\n";
  }
  return out;
}

DataParallelRunner::DataParallelRunner(Program& program, const data::Dataset& train, Exchange* exchange,
                                       DataParallelOptions options)
    : program_(program), exchange_(exchange), options_(std::move(options)),
      plan_(BucketPlan::of(program.info(), options_.bucket_bytes)),
      grad_entry_(&need(program.info(), "grad_step")), apply_entry_(&need(program.info(), "apply_step")) {
  if (ranks() < 1) throw std::runtime_error("data-parallel training needs at least one rank");
  bool has_x = false, has_y = false;
  Tensor sample;
  for (const TensorInfo& t : grad_entry_->inputs) {
    if (t.name == options_.features_input) train::check_fits(*grad_entry_, t, train.model_sample(sample), "features"), has_x = true;
    if (t.name == options_.labels_input) train::check_fits(*grad_entry_, t, train.labels, "labels"), has_y = true;
  }
  if (!has_x || !has_y)
    throw std::runtime_error("grad_step has no input named '" + (has_x ? options_.labels_input : options_.features_input) + "'");
  grads_.resize(static_cast<size_t>(plan_.elements));
  state_.resize(static_cast<size_t>(plan_.averaged_elements));
  for (const std::string& name : plan_.averaged)  // persistent storage never moves
    averaged_.emplace_back(static_cast<float*>(program.persistent(name)),
                           static_cast<size_t>(program.persistent_info(name).bytes(1) / 4));
  // Gradients are written straight into their place in the flat buffer.
  const int64_t max_batch = program.info().max_batch;
  for (size_t i = 0; i < grad_entry_->outputs.size(); ++i) {
    const TensorInfo& t = grad_entry_->outputs[i];
    if (t.name == "loss") loss_i_ = static_cast<int>(i);
    if (t.name == "correct") correct_i_ = static_cast<int>(i);
    out_storage_.emplace_back(t.name.rfind(kGradPrefix, 0) == 0 ? 0 : std::max<int64_t>(t.bytes(max_batch), 8));
    out_.push_back(out_storage_.back().data());
  }
  if (loss_i_ < 0) throw std::runtime_error("grad_step has no \"loss\" output");
  if (!exchange_ && ranks() > 1 && !grad_entry_->rank_sums.empty())
    throw std::runtime_error("the model synchronizes batch norm statistics across ranks (\"sync\": true), which one "
                             "process cannot simulate: run it under mpirun --distributed");
  for (const BucketPlan::Bucket& b : plan_.buckets) {
    int ready = 0;  // kernels of grad_step after which every gradient of the bucket is final
    for (const BucketPlan::Slot& s : b.slots) {
      out_[static_cast<size_t>(s.output)] = grads_.data() + s.offset;
      if (static_cast<size_t>(s.output) < grad_entry_->output_ready.size())
        ready = std::max(ready, grad_entry_->output_ready[static_cast<size_t>(s.output)]);
    }
    bucket_ready_.push_back(ready);
  }
}

void DataParallelRunner::read_state(std::vector<float>& into) const {
  into.resize(static_cast<size_t>(plan_.averaged_elements));
  float* at = into.data();
  for (std::span<float> t : averaged_) at = std::copy(t.begin(), t.end(), at);
}

void DataParallelRunner::write_state(const std::vector<float>& from) {
  ++program_.context().params_epoch;  // as Program::persistent does for writers: folded values are stale
  const float* at = from.data();
  for (std::span<float> t : averaged_) {
    std::copy(at, at + t.size(), t.begin());
    at += t.size();
  }
}

std::pair<double, double> DataParallelRunner::contribute(const data::Batch& batch, int r, float lr) {
  const int64_t total = batch.size();
  auto [begin, end] = shard_rows(total, r, ranks());
  const int64_t b = end - begin;
  // The shard's mean loss weighted to the global batch's mean (the gradient
  // step differentiates loss * loss_scale).
  const float weight = static_cast<float>(static_cast<double>(b) / static_cast<double>(total));
  // Gradient buckets go out as soon as the backward pass has finished them
  // (the last layers' first), while it computes the rest.
  const bool overlap = exchange_ && options_.overlap && !grad_entry_->kernels.empty();
  size_t started = 0;
  auto start_ready = [&](int kernels_done) {
    while (overlap && started < plan_.buckets.size() && bucket_ready_[started] <= kernels_done) {
      const BucketPlan::Bucket& k = plan_.buckets[started];
      std::span<float> part(grads_.data() + k.offset, static_cast<size_t>(k.elements));
      handles_[started] = exchange_->start_sum(part, bucket_name(started));
      ++started;
    }
    if (overlap && started > 0) exchange_->progress();
  };
  handles_.assign(plan_.buckets.size(), -1);
  if (b == 0) {  // a last batch smaller than the ranks: this one adds nothing
    std::fill(grads_.begin(), grads_.end(), 0.0f);
    std::fill(state_.begin(), state_.end(), 0.0f);
    start_ready(INT32_MAX);
    return {0.0, 0.0};
  }
  const Tensor &x = batch.features(), &y = batch.labels();
  const auto* xp = static_cast<const uint8_t*>(x.raw()) + x.nbytes() / static_cast<size_t>(total) * static_cast<size_t>(begin);
  const auto* yp = static_cast<const uint8_t*>(y.raw()) + y.nbytes() / static_cast<size_t>(total) * static_cast<size_t>(begin);
  const int64_t first_sample = begin;
  train::feed_inputs(*grad_entry_,
                     {{options_.features_input, xp}, {options_.labels_input, yp}, {"lr", &lr},
                      {"first_sample", &first_sample}, {"loss_scale", &weight}},
                     in_);
  const bool sync = exchange_ && !grad_entry_->rank_sums.empty();
  if (overlap || sync) {
    program_.run_kernelwise("grad_step", b, in_, out_, [&](int done) {
      for (const EntryInfo::RankSum& rs : grad_entry_->rank_sums)
        if (sync && rs.after == done)
          exchange_->sum_in_rank_order(
              std::span(reinterpret_cast<float*>(program_.arena() + rs.arena_offset), static_cast<size_t>(rs.elements)),
              "synchronized batch norm statistics (step " + std::to_string(step_count_) + ")");
      start_ready(done);
    });
    start_ready(INT32_MAX);
  } else {
    program_.run("grad_step", b, in_, out_);
  }
  read_state(state_);
  if (weight != 1.0f)
    for (float& v : state_) v *= weight;
  const double loss = train::read_scalar(out_[static_cast<size_t>(loss_i_)], grad_entry_->outputs[static_cast<size_t>(loss_i_)].type);
  const double correct =
      correct_i_ < 0 ? NAN
                     : train::read_scalar(out_[static_cast<size_t>(correct_i_)], grad_entry_->outputs[static_cast<size_t>(correct_i_)].type);
  return {loss * static_cast<double>(b), correct};
}

std::string DataParallelRunner::bucket_name(size_t k) const {
  return "gradient bucket " + std::to_string(k + 1) + " of " + std::to_string(plan_.buckets.size()) + " (step " +
         std::to_string(step_count_) + ")";
}

void DataParallelRunner::apply(const train::StepScalars& scalars) {
  std::vector<std::pair<std::string, const void*>> named;
  scalars.append_to(named);
  for (const BucketPlan::Bucket& b : plan_.buckets)
    for (const BucketPlan::Slot& s : b.slots) named.push_back({s.name, grads_.data() + s.offset});
  train::feed_inputs(*apply_entry_, named, in_);
  std::vector<void*> none;
  program_.run("apply_step", 1, in_, none);
}

train::StepResult DataParallelRunner::step(const data::Batch& batch, const train::StepScalars& scalars, bool stop) {
  const float lr = scalars.lr;
  const int64_t total = batch.size();
  ++step_count_;
  // [loss * samples, correct, stop requests] of this rank, summed over ranks.
  double counts[3] = {0, 0, stop ? 1.0 : 0.0};
  auto t0 = Clock::now();
  if (exchange_) {
    auto [loss_sum, correct] = contribute(batch, exchange_->rank(), lr);
    counts[0] = loss_sum, counts[1] = correct;
    timing_.compute += since(t0);
    const std::string at = " (step " + std::to_string(step_count_) + ")";
    t0 = Clock::now();
    exchange_->sum_in_rank_order(std::span<double>(counts, 3), "the loss exchange" + at);
    timing_.wait += since(t0);
    t0 = Clock::now();
    for (size_t k = 0; k < plan_.buckets.size(); ++k) {
      const BucketPlan::Bucket& b = plan_.buckets[k];
      if (handles_[k] >= 0) exchange_->finish_sum(handles_[k]);  // started during the backward pass
      else exchange_->sum_in_rank_order(std::span<float>(grads_.data() + b.offset, static_cast<size_t>(b.elements)),
                                        bucket_name(k));
    }
    if (!state_.empty()) exchange_->sum_in_rank_order(std::span<float>(state_), "the running statistics" + at);
    timing_.communicate += since(t0);
    t0 = Clock::now();
  } else {
    // The reference: every rank's shard in turn from the same starting state,
    // each contribution kept, then summed in rank order as the ranks do.
    const int n = ranks();
    std::vector<float> start_state;
    read_state(start_state);
    std::vector<std::vector<float>> grads(static_cast<size_t>(n)), states(static_cast<size_t>(n));
    for (int r = 0; r < n; ++r) {
      write_state(start_state);
      auto [loss_sum, correct] = contribute(batch, r, lr);
      counts[0] += loss_sum, counts[1] += correct;
      grads[static_cast<size_t>(r)] = grads_;
      states[static_cast<size_t>(r)] = state_;
    }
    std::vector<const float*> parts;
    for (auto& g : grads) parts.push_back(g.data());
    sum_parts_in_order(parts, grads_.data(), plan_.elements);
    parts.clear();
    for (auto& s : states) parts.push_back(s.data());
    sum_parts_in_order(parts, state_.data(), plan_.averaged_elements);
  }
  write_state(state_);
  apply(scalars);
  timing_.compute += since(t0);
  ++timing_.steps;
  train::StepResult r;
  r.loss = counts[0] / static_cast<double>(total);
  r.correct = correct_i_ < 0 ? NAN : counts[1];
  r.stop = counts[2] > 0;
  return r;
}

train::EvalResult DataParallelRunner::evaluate(const data::Dataset& data) {
  auto [begin, end] = shard_rows(data.size(), rank(), exchange_ ? exchange_->size() : 1);
  train::EvalSums s = train::evaluate_rows(program_, data, options_.features_input, options_.labels_input, begin, end);
  if (exchange_) {
    double sums[3] = {s.loss_sum, std::isnan(s.correct) ? 0.0 : s.correct, static_cast<double>(s.samples)};
    exchange_->sum_in_rank_order(std::span<double>(sums, 3), "the evaluation sums");
    s.loss_sum = sums[0];
    if (!std::isnan(s.correct)) s.correct = sums[1];
    s.samples = static_cast<int64_t>(sums[2]);
  }
  return train::eval_result(s);
}

void DataParallelRunner::check_epoch(const std::function<const std::string&()>& digest, int64_t epoch) {
  if (!exchange_) return;
  const std::string& mine = digest();
  auto all = exchange_->all_gather(std::span(reinterpret_cast<const uint8_t*>(mine.data()), mine.size()),
                                   "comparing the ranks' params after epoch " + std::to_string(epoch));
  std::string differ;
  for (size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0]) differ += (differ.empty() ? "" : ", ") + std::to_string(r);
  if (!differ.empty())
    throw std::runtime_error("after epoch " + std::to_string(epoch) + " the params of rank(s) " + differ +
                             " differ from rank 0's: the ranks no longer compute the same bits (a kiln bug; please "
                             "report it with the graph and spec)");
}

}  // namespace kiln::dist
