// Batch slicing: a batch run as consecutive smaller calls of an entry whose
// rows are independent (runtime/program.h says when and why).
#include <chrono>
#include <stdexcept>

#include "runtime/float_mode.h"
#include "runtime/program.h"

namespace kiln {

void Program::run_rows(const EntryInfo& e, int64_t first, int64_t rows, const std::vector<const void*>& inputs,
                       const std::vector<void*>& outputs) {
  // A tensor with the batch as its axis 0 moves by `first` rows; one without
  // it is the same for every slice.
  auto offset = [first](const TensorInfo& t) {
    return !t.shape.empty() && t.shape[0] < 0 ? t.bytes(first) : int64_t{0};
  };
  slice_in_.resize(inputs.size());
  slice_out_.resize(outputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) slice_in_[i] = static_cast<const uint8_t*>(inputs[i]) + offset(e.inputs[i]);
  for (size_t i = 0; i < outputs.size(); ++i) slice_out_[i] = static_cast<uint8_t*>(outputs[i]) + offset(e.outputs[i]);
  ctx_.batch = rows;
  const FloatModeScope mode(flush_denormals_);
  int32_t status = e.fn(&ctx_, slice_in_.data(), slice_out_.data());
  if (status != 0)
    throw std::runtime_error(e.name + " failed with status " + std::to_string(status) + " on samples " +
                             std::to_string(first) + ".." + std::to_string(first + rows - 1));
}

void Program::set_batch_slice(const std::string& name, int64_t rows) {
  const EntryInfo* e = entry(name);
  if (!e) throw std::runtime_error("program '" + info_.name + "' has no entry point '" + name + "'");
  if (rows < 0) throw std::runtime_error("batch slice " + std::to_string(rows) + " of " + name + ": must be 0 (whole) or more");
  if (rows > 0 && !e->rows_mixed.empty())
    throw std::runtime_error(name + " of '" + info_.name + "' cannot run a batch in slices: " + e->rows_mixed);
  if (rows == 0) slice_rows_.erase(name);
  else slice_rows_[name] = rows;
}

int64_t Program::batch_slice(const std::string& name) const {
  auto it = slice_rows_.find(name);
  return it == slice_rows_.end() ? 0 : it->second;
}

std::vector<Program::SliceTime> Program::tune_batch_slice(const std::string& name, int64_t batch,
                                                          const std::vector<const void*>& inputs,
                                                          const std::vector<void*>& outputs) {
  const EntryInfo& e = checked_call(name, batch, inputs, outputs);
  std::vector<SliceTime> times{{batch, 0, true}};
  if (e.rows_mixed.empty())
    for (int64_t rows = 1; rows < batch; rows *= 2) times.push_back({rows, 0, true});
  using Clock = std::chrono::steady_clock;
  if (times.size() == 1) {  // nothing to choose: one call, so the outputs hold its results
    const auto start = Clock::now();
    run(name, batch, inputs, outputs);
    times[0].ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    return times;
  }
  double best = 0;
  for (int round = 0; round < 2; ++round)
    for (SliceTime& t : times) {
      const auto start = Clock::now();
      double ms = 0;
      int64_t done = 0;
      while (done < batch) {
        const int64_t rows = std::min(t.rows, batch - done);
        run_rows(e, done, rows, inputs, outputs);
        done += rows;
        ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        if (best > 0 && ms > best && done < batch) break;  // already slower than the best: stop
      }
      const bool finished = done == batch;
      if (!finished) ms = ms * static_cast<double>(batch) / static_cast<double>(done);  // projected
      // A finished round counts over a projected one, then the faster.
      if (round == 0 || (finished != t.finished ? finished : ms < t.ms)) t = {t.rows, ms, finished};
      if (finished && (best == 0 || ms < best)) best = ms;
    }
  const SliceTime* fastest = &times[0];
  for (const SliceTime& t : times)
    if (t.finished && t.ms < fastest->ms) fastest = &t;
  set_batch_slice(name, fastest->rows == batch ? 0 : fastest->rows);
  // The outputs are whole: the first candidate finished, and a stopped one
  // rewrote a prefix with the same values.
  return times;
}

}  // namespace kiln
