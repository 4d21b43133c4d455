#include "runtime/float_mode.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace kiln {

#if defined(__x86_64__) || defined(__i386__)
constexpr uint32_t kFlushBit = 0x8000;  // MXCSR.FTZ
uint32_t float_mode() { return _mm_getcsr(); }
void set_float_mode(uint32_t mode) { _mm_setcsr(mode); }
#elif defined(__aarch64__)
constexpr uint32_t kFlushBit = 1u << 24;  // FPCR.FZ
uint32_t float_mode() {
  uint64_t v;
  asm volatile("mrs %0, fpcr" : "=r"(v));
  return static_cast<uint32_t>(v);
}
void set_float_mode(uint32_t mode) { asm volatile("msr fpcr, %0" : : "r"(static_cast<uint64_t>(mode))); }
#else
constexpr uint32_t kFlushBit = 0;
uint32_t float_mode() { return 0; }
void set_float_mode(uint32_t) {}
#endif

uint32_t flushing_denormals(uint32_t mode) { return mode | kFlushBit; }
bool denormals_flushed() { return kFlushBit != 0 && (float_mode() & kFlushBit) != 0; }

FloatModeScope::FloatModeScope(bool flush_denormals) : saved_(float_mode()) {
  const uint32_t want = flush_denormals ? saved_ | kFlushBit : saved_ & ~kFlushBit;
  if (want != saved_) set_float_mode(want);
}

FloatModeScope::~FloatModeScope() {
  if (float_mode() != saved_) set_float_mode(saved_);
}

}  // namespace kiln
