#pragma once
// The boundary between compiled code and the runtime. Every compiled program,
// JIT or AOT, exposes plain C entry points with one signature:
//
//   int32_t entry(kiln_context* ctx, const void* const* inputs, void* const* outputs);
//
// `inputs` and `outputs` hold one pointer per tensor of that entry (see
// EntryInfo), row-major, with the open batch dimension bound to ctx->batch.
// Inputs and outputs must not overlap each other or the program's storage.
// Entry points: init (fills params and state: constant initializers itself,
// the others from `inputs`), predict, eval_step, train_step (params and
// optimizer state updated in place at the end of the step).
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/tensor.h"

extern "C" {

// Runs body(closure, begin, end) over a partition of [0, n); returns when all are done.
// Kernels may store large outputs with x86 non-temporal stores: a parallel_for
// other than the runtime's must fence them (sfence) after each body call and
// before handing work to other threads, as kiln::ThreadPool does.
typedef void (*kiln_parallel_body)(void* closure, int64_t begin, int64_t end);
typedef void (*kiln_parallel_for_fn)(void* pool, int64_t n, kiln_parallel_body body, void* closure);

// Layout is part of the ABI: generated code reads these fields by offset.
typedef struct kiln_context {
  uint8_t* arena;                    // every intermediate, at compile-time offsets (64-byte aligned)
  uint8_t* params;                   // model parameters (64-byte aligned)
  uint8_t* state;                    // optimizer state (64-byte aligned)
  int64_t batch;                     // the open batch dimension, 1..max_batch
  kiln_parallel_for_fn parallel_for; // the runtime's thread pool
  void* pool;                        // opaque, passed back to parallel_for
  // Bumped whenever params may have changed (an entry that writes them runs,
  // or Program::persistent hands out a pointer; AOT callers writing params
  // themselves bump it too): values computed from params alone (batch norm
  // folded into weights) are recomputed by the next entry that reads them.
  int64_t params_epoch;
} kiln_context;

typedef int32_t (*kiln_entry_fn)(kiln_context* ctx, const void* const* inputs, void* const* outputs);
// Each kernel of a program is callable on its own with the same arguments
// (used to compare every kernel with the interpreter).
typedef void (*kiln_kernel_fn)(kiln_context* ctx, const void* const* inputs, void* const* outputs);

// The runtime's parallel_for: `pool` is a kiln::ThreadPool* (or null: run inline).
void kiln_thread_pool_parallel_for(void* pool, int64_t n, kiln_parallel_body body, void* closure);
}

namespace kiln {

class ThreadPool;

// Element types, numbered like the compiler's DType (f32, f64, i32, i64, bool).
// Element types are runtime/tensor.h's ElemType (numbered like the compiler's DType).

struct TensorInfo {
  std::string name;
  ElemType type = ElemType::f32;
  std::vector<int64_t> shape;  // -1 = the open batch dimension
  int64_t offset = 0;          // persistent tensors: bytes into params or state
  bool state = false;          // persistent tensors: optimizer state (else a param)
  int64_t bytes(int64_t batch) const;
};

struct EntryInfo {
  std::string name;
  kiln_entry_fn fn = nullptr;
  std::vector<TensorInfo> inputs, outputs;
  std::vector<std::string> writes;  // the persistent tensors it updates (JIT programs; empty from AOT)
  // Kernel by kernel (JIT programs; empty from AOT), for callers that do
  // other work between kernels (data-parallel training sends a gradient as
  // soon as it is final): the kernels' names in order (ProgramInfo::kernel
  // finds them, on the first such run: looking up every kernel of every
  // entry at load cost 50 ms for ResNet-20), the input slots they read
  // (input i fills slot input_slot[i] of slot_count), and per output the
  // number of kernels after which it holds its final value.
  std::vector<std::string> kernels;
  std::vector<int> input_slot;
  int slot_count = 0;
  std::vector<int> output_ready;
  bool writes_persistent = false;
  // Empty when each output row is computed from the same input rows alone
  // (JIT programs; AOT entries say "unknown"): Program::set_batch_slice may
  // then run a batch as several smaller ones. Else why not.
  std::string rows_mixed = "unknown";
  // Arena buffers a data-parallel job sums over its ranks (cross_rank_sum:
  // synchronized batch norm), each right after the `after`-th kernel.
  struct RankSum {
    int after = 0;
    int64_t arena_offset = 0, elements = 0;  // f32
  };
  std::vector<RankSum> rank_sums;
};

struct ProgramInfo {
  std::string name;
  int64_t max_batch = 1;
  int64_t arena_bytes = 0, param_bytes = 0, state_bytes = 0;
  std::vector<TensorInfo> persistent;   // params and state
  std::vector<EntryInfo> entries;
  std::shared_ptr<const void> code;     // keeps the code alive (a JIT, a loaded library)
  std::function<kiln_kernel_fn(const std::string&)> kernel;  // a kernel by name (JIT programs; null from AOT)
};

// Deleter of the pages a Program maps for its arena, params and state.
struct UnmapPages {
  size_t bytes = 0;
  void operator()(uint8_t* p) const;
};

// Owns a compiled program's memory (arena, params, state) and calls its entry points.
class Program {
 public:
  // `pool` may be null (everything runs on the calling thread); it must outlive the Program.
  explicit Program(ProgramInfo info, ThreadPool* pool = nullptr);
  ~Program();
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  const ProgramInfo& info() const { return info_; }
  const EntryInfo* entry(const std::string& name) const;
  // Runs an entry at batch size `batch` (1..max_batch). Throws std::runtime_error
  // for an unknown entry, a bad batch size, a wrong pointer count, or a nonzero status.
  void run(const std::string& entry, int64_t batch, const std::vector<const void*>& inputs,
           const std::vector<void*>& outputs);
  // As run(), one kernel at a time, calling between(k) after the k-th (an
  // entry's values of params alone are computed every time, not once per
  // parameter load). Throws when the entry has no kernel list (AOT).
  void run_kernelwise(const std::string& entry, int64_t batch, const std::vector<const void*>& inputs,
                      const std::vector<void*>& outputs, const std::function<void(int kernels_done)>& between);
  // The storage of a persistent tensor (param or state) by name; throws if unknown.
  void* persistent(const std::string& name);
  const TensorInfo& persistent_info(const std::string& name) const;

  // Entries run with denormal results flushed to zero (runtime/float_mode.h
  // says why); false keeps IEEE denormals (slower where they occur).
  void set_flush_denormals(bool flush) { flush_denormals_ = flush; }
  bool flush_denormals() const { return flush_denormals_; }

  // Batch slicing (runtime/batch_slices.cpp): an entry whose output rows
  // each read only the same input rows (EntryInfo::rows_mixed empty) runs a
  // batch above `rows` as consecutive calls of `rows` samples each, the same
  // results bit for bit. A memory-bound model then keeps a slice's
  // activations in cache instead of streaming the whole batch's through
  // memory at every layer; a compute-bound one wants its whole batch (larger
  // GEMMs). 0, the default, runs every batch whole. Throws, saying why, for
  // an entry whose rows mix.
  void set_batch_slice(const std::string& entry, int64_t rows);
  int64_t batch_slice(const std::string& entry) const;
  // Times `entry` at `batch` run whole and in slices of every power of two
  // below it, two rounds (a candidate already slower than the best so far
  // stops early), and keeps the fastest with set_batch_slice. The outputs
  // hold the entry's results afterwards. Per candidate: its slice (the
  // batch: whole), its faster round in ms, and whether that round finished.
  struct SliceTime {
    int64_t rows = 0;
    double ms = 0;
    bool finished = true;
  };
  std::vector<SliceTime> tune_batch_slice(const std::string& entry, int64_t batch, const std::vector<const void*>& inputs,
                                          const std::vector<void*>& outputs);

  kiln_context& context() { return ctx_; }
  uint8_t* arena() { return ctx_.arena; }

 private:
  const EntryInfo& checked_call(const std::string& entry, int64_t batch, const std::vector<const void*>& inputs,
                                const std::vector<void*>& outputs) const;

  ProgramInfo info_;
  kiln_context ctx_{};
  bool flush_denormals_ = true;
  std::vector<const void*> slots_;  // run_kernelwise's input slots
  std::map<std::string, std::vector<kiln_kernel_fn>> kernelwise_;  // per entry, its kernels once looked up
  std::map<std::string, int64_t> slice_rows_;  // set_batch_slice, per entry
  std::vector<const void*> slice_in_;          // run_rows' offset pointers (kept: no allocation per slice)
  std::vector<void*> slice_out_;
  // One call of the entry at `rows` samples, the inputs and outputs offset to sample `first`.
  void run_rows(const EntryInfo& e, int64_t first, int64_t rows, const std::vector<const void*>& inputs,
                const std::vector<void*>& outputs);
  // Pages mapped from the OS, zero-filled when first touched: a large arena
  // costs nothing until it is used.
  std::unique_ptr<uint8_t, UnmapPages> arena_, params_, state_;
};

}  // namespace kiln
