#include "runtime/program.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "runtime/float_mode.h"
#include "runtime/thread_pool.h"

extern "C" void kiln_thread_pool_parallel_for(void* pool, int64_t n, kiln_parallel_body body, void* closure) {
  if (n <= 0) return;
  auto* tp = static_cast<kiln::ThreadPool*>(pool);
  if (!tp || tp->threads() == 1) {
    body(closure, 0, n);
    return;
  }
  tp->parallel_for(n, body, closure);  // no std::function: nothing allocated per call
}

namespace kiln {

int64_t TensorInfo::bytes(int64_t batch) const {
  int64_t n = static_cast<int64_t>(elem_size(type));
  for (int64_t d : shape) n *= d < 0 ? batch : d;
  return n;
}

void UnmapPages::operator()(uint8_t* p) const {
  if (p) munmap(p, bytes);
}

// Zeroed and page aligned (the kernels assume 64 bytes); at least one page,
// so every pointer is valid. Anonymous pages are zero-filled when first
// touched: a full-batch arena (hundreds of MB) is not written here.
static std::unique_ptr<uint8_t, UnmapPages> alloc_zeroed(int64_t bytes, const char* what) {
  const size_t size = static_cast<size_t>(std::max<int64_t>(bytes, 1));
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    throw std::runtime_error(std::string("cannot allocate ") + std::to_string(size) + " bytes for the " + what + ": " +
                             std::strerror(errno));
  return {static_cast<uint8_t*>(p), UnmapPages{size}};
}

Program::Program(ProgramInfo info, ThreadPool* pool)
    : info_(std::move(info)),
      arena_(alloc_zeroed(info_.arena_bytes, "arena")),
      params_(alloc_zeroed(info_.param_bytes, "params")),
      state_(alloc_zeroed(info_.state_bytes, "optimizer state")) {
  ctx_.arena = arena_.get();
  ctx_.params = params_.get();
  ctx_.params_epoch = 1;  // prepared epochs start at 0 in the zeroed state: the first call prepares
  ctx_.state = state_.get();
  ctx_.batch = info_.max_batch;
  ctx_.parallel_for = kiln_thread_pool_parallel_for;
  ctx_.pool = pool;
}

Program::~Program() = default;

const EntryInfo* Program::entry(const std::string& name) const {
  for (auto& e : info_.entries)
    if (e.name == name) return &e;
  return nullptr;
}

const EntryInfo& Program::checked_call(const std::string& name, int64_t batch, const std::vector<const void*>& inputs,
                                       const std::vector<void*>& outputs) const {
  const EntryInfo* e = entry(name);
  if (!e) throw std::runtime_error("program '" + info_.name + "' has no entry point '" + name + "'");
  if (batch < 1 || batch > info_.max_batch)
    throw std::runtime_error("batch size " + std::to_string(batch) + " is outside 1.." + std::to_string(info_.max_batch) +
                             " (the maximum " + info_.name + " was compiled for)");
  if (inputs.size() != e->inputs.size() || outputs.size() != e->outputs.size())
    throw std::runtime_error(name + " takes " + std::to_string(e->inputs.size()) + " inputs and " +
                             std::to_string(e->outputs.size()) + " outputs, got " + std::to_string(inputs.size()) +
                             " and " + std::to_string(outputs.size()));
  for (size_t i = 0; i < inputs.size(); ++i)
    if (!inputs[i]) throw std::runtime_error(name + ": input '" + e->inputs[i].name + "' is null");
  for (size_t i = 0; i < outputs.size(); ++i)
    if (!outputs[i]) throw std::runtime_error(name + ": output '" + e->outputs[i].name + "' is null");
  return *e;
}

void Program::run(const std::string& name, int64_t batch, const std::vector<const void*>& inputs,
                  const std::vector<void*>& outputs) {
  const EntryInfo& e = checked_call(name, batch, inputs, outputs);
  const int64_t rows = batch_slice(name);
  if (rows == 0 || rows >= batch) {
    ctx_.batch = batch;
    const FloatModeScope mode(flush_denormals_);
    int32_t status = e.fn(&ctx_, inputs.data(), outputs.data());
    if (status != 0) throw std::runtime_error(name + " failed with status " + std::to_string(status));
    return;
  }
  for (int64_t first = 0; first < batch; first += rows) run_rows(e, first, std::min(rows, batch - first), inputs, outputs);
  ctx_.batch = batch;
}

void Program::run_kernelwise(const std::string& name, int64_t batch, const std::vector<const void*>& inputs,
                             const std::vector<void*>& outputs, const std::function<void(int)>& between) {
  const EntryInfo& e = checked_call(name, batch, inputs, outputs);
  if (!info_.kernel || (e.kernels.empty() && !e.outputs.empty()))
    throw std::runtime_error(name + " of '" + info_.name + "' cannot run kernel by kernel (an AOT program)");
  std::vector<kiln_kernel_fn>& fns = kernelwise_[name];
  if (fns.size() != e.kernels.size()) {
    std::vector<kiln_kernel_fn> found;
    for (const std::string& k : e.kernels) found.push_back(info_.kernel(k));
    fns = std::move(found);
  }
  slots_.assign(static_cast<size_t>(e.slot_count), nullptr);
  for (size_t i = 0; i < e.input_slot.size(); ++i) slots_[static_cast<size_t>(e.input_slot[i])] = inputs[i];
  ctx_.batch = batch;
  for (size_t k = 0; k < fns.size(); ++k) {
    {
      const FloatModeScope mode(flush_denormals_);  // (not around `between`: the caller's own work)
      fns[k](&ctx_, slots_.data(), outputs.data());
    }
    between(static_cast<int>(k + 1));
  }
  if (e.writes_persistent) ++ctx_.params_epoch;  // as the entry function does
}

const TensorInfo& Program::persistent_info(const std::string& name) const {
  for (auto& t : info_.persistent)
    if (t.name == name) return t;
  throw std::runtime_error("program '" + info_.name + "' has no param or state named '" + name + "'");
}

void* Program::persistent(const std::string& name) {
  const TensorInfo& t = persistent_info(name);
  ++ctx_.params_epoch;  // the caller may write through it
  return (t.state ? ctx_.state : ctx_.params) + t.offset;
}

}  // namespace kiln
