#pragma once
// Per-kernel timing of one entry point: runs the entry's kernels one by one
// (each is callable on its own, see CompiledProgram::kernel) for a number of
// steps, timing each, and relates the time to the kernel's work (FLOPs from
// its loop nest, or 2*M*N*K for a gemm). For `kiln profile`.
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/codegen/jit.h"
#include "runtime/program.h"

namespace kiln::codegen {

struct KernelTime {
  std::string kernel, node, origin;  // kernel name, graph node, JSON node
  int64_t calls = 0;
  double total_ms = 0;
  double flops = 0;  // per call (0: moves data only)
  double wait_ms = 0;  // of total_ms: the caller waiting for workers after its own chunks
};

struct EntryProfile {
  std::string entry;
  int64_t batch = 0;
  int steps = 0, threads = 1;
  double step_ms = 0;          // the whole entry called as usual, mean per step
  double kernels_ms = 0;       // the kernels timed one by one, summed, per step
  int once_per_params = 0;     // kernels of values of params alone: run when the params change, not timed
  // The whole-step runs' parallel hand-offs, per step: parallel_for calls
  // that used the workers, the caller's wait for them after its own chunk
  // (barriers), and the share of the step the workers sat idle.
  double parallel_calls = 0, barrier_ms = 0, worker_idle = 0;
  std::vector<KernelTime> kernels;  // slowest first
};

// Floating-point operations of one call of `k` at batch size `batch`.
double kernel_flops(const lower::Kernel& k, int64_t batch);

// Runs `entry` `steps` times whole (timed), then `steps` times kernel by
// kernel (each timed), after `warmup` untimed steps. `inputs` are the
// entry's inputs in its order; `outputs` sized for `batch`. Entries that
// update params keep training on the same inputs.
EntryProfile profile_entry(const CompiledProgram& cp, Program& prog, const std::string& entry, int64_t batch,
                           const std::vector<const void*>& inputs, const std::vector<void*>& outputs, int steps,
                           int warmup = 2);

// Random inputs (features in [0, 1), the learning rate `lr`) and output
// buffers of an entry at batch size `batch`: kernel times do not depend on
// the values. The pointer vectors point into the byte vectors.
struct EntryBuffers {
  std::vector<std::vector<uint8_t>> input_bytes, output_bytes;
  std::vector<const void*> inputs;
  std::vector<void*> outputs;
};
EntryBuffers random_entry_buffers(const lower::Entry& entry, int64_t batch, uint64_t seed,
                                  const std::string& features_input, double lr);

// The table: kernel, JSON node, calls, total ms, % of the step, ms per call, GFLOP/s.
std::string format_profile(const EntryProfile& p, size_t max_rows = 0);

}  // namespace kiln::codegen
