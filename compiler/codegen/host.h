#pragma once
// The machine kiln compiles for: the host CPU as LLVM detects it. The vector
// width of generated kernels follows its SIMD features (AVX-512: 16 floats,
// AVX/AVX2: 8, SSE/NEON: 4).
#include <memory>
#include <string>

namespace llvm {
class TargetMachine;
}

namespace kiln::codegen {

struct HostTarget {
  std::string triple;
  std::string cpu;        // e.g. "znver3", "skylake-avx512"
  std::string features;   // LLVM feature string, "+avx2,+fma,..."
  int vector_bits = 128;  // widest SIMD register the kernels use
  bool fma = false;
  int f32_lanes() const { return vector_bits / 32; }
};

// Detected once (initializes LLVM's native target on first use).
const HostTarget& host_target();
// A target machine for the host at -O3 (for the optimizer's cost model and the asm printer).
std::unique_ptr<llvm::TargetMachine> make_host_target_machine();

}  // namespace kiln::codegen
