#include "runtime/float_mode.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace kiln {

#if defined(__x86_64__) || defined(__i386__)
constexpr uint32_t kFlushBit = 0x8000;  // MXCSR.FTZ
constexpr uint32_t kStatusBits = 0x3f;  // MXCSR bits 0-5: the sticky exception flags
uint32_t float_mode() { return _mm_getcsr(); }
void set_float_mode(uint32_t mode) { _mm_setcsr(mode); }
#elif defined(__aarch64__)
constexpr uint32_t kFlushBit = 1u << 24;  // FPCR.FZ
constexpr uint32_t kStatusBits = 0;  // FPCR holds controls only (the flags live in FPSR)
uint32_t float_mode() {
  uint64_t v;
  asm volatile("mrs %0, fpcr" : "=r"(v));
  return static_cast<uint32_t>(v);
}
void set_float_mode(uint32_t mode) { asm volatile("msr fpcr, %0" : : "r"(static_cast<uint64_t>(mode))); }
#else
constexpr uint32_t kFlushBit = 0;
constexpr uint32_t kStatusBits = 0;
uint32_t float_mode() { return 0; }
void set_float_mode(uint32_t) {}
#endif

bool same_float_controls(uint32_t a, uint32_t b) { return ((a ^ b) & ~kStatusBits) == 0; }
bool denormals_flushed() { return kFlushBit != 0 && (float_mode() & kFlushBit) != 0; }

FloatModeScope::FloatModeScope(bool flush_denormals) : saved_(float_mode()) {
  const uint32_t want = flush_denormals ? saved_ | kFlushBit : saved_ & ~kFlushBit;
  if (want != saved_) set_float_mode(want);
}

FloatModeScope::~FloatModeScope() {
  if (float_mode() != saved_) set_float_mode(saved_);
}

}  // namespace kiln
