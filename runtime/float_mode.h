#pragma once
// The floating-point mode compiled kernels run in: denormal results flushed
// to zero (x86 MXCSR.FTZ; AArch64 FPCR.FZ), set around every entry call
// (Program) and carried to the pool's workers with each job (ThreadPool).
//
// Why: an operation whose result is a denormal takes a microcode assist,
// about a hundred cycles, on the x86 cores kiln targets. Attention's causal
// mask makes half of each softmax row exp(-large) = a denormal (or a product
// through one), and the softmax ran 4x slower than on unmasked rows (char_gpt:
// 2.9 vs 0.7 ms; a row of denormals 8.5x). TensorFlow's executors flush the
// same way. Denormal inputs are still read as they are (no DAZ): a value
// handed in is never changed, only results below 1.2e-38 become 0.
#include <cstdint>

namespace kiln {

// The calling thread's floating-point control word (0 where not supported).
uint32_t float_mode();
void set_float_mode(uint32_t mode);
// Whether two modes set the same controls (rounding, flushing, exception
// masks); the sticky exception flags a thread has raised do not count.
bool same_float_controls(uint32_t a, uint32_t b);
// Whether the calling thread flushes denormal results now.
bool denormals_flushed();

// Sets the calling thread's mode for a scope (flush: denormal results flushed,
// else kept) and restores the previous one.
class FloatModeScope {
 public:
  explicit FloatModeScope(bool flush_denormals);
  ~FloatModeScope();
  FloatModeScope(const FloatModeScope&) = delete;
  FloatModeScope& operator=(const FloatModeScope&) = delete;

 private:
  uint32_t saved_;
};

}  // namespace kiln
