#pragma once
// The machine kiln compiles for: the host CPU as LLVM detects it (the JIT),
// or a named CPU (ahead-of-time objects, `kiln compile --target-cpu`). The
// vector width of generated kernels follows the target's SIMD features
// (AVX-512: 16 floats, AVX/AVX2: 8, SSE/NEON: 4), never the host's when
// compiling for another CPU.
#include <memory>
#include <string>

namespace llvm {
class TargetMachine;
}

namespace kiln::codegen {

struct HostTarget {
  std::string triple;
  std::string cpu;        // e.g. "znver3", "skylake-avx512"
  std::string features;   // LLVM feature string, "+avx2,+fma,..." ("" for a named CPU: derived from its name)
  int vector_bits = 128;  // widest SIMD register the kernels use
  bool fma = false;
  int f32_lanes() const { return vector_bits / 32; }
};

// Detected once (initializes LLVM's native target on first use).
const HostTarget& host_target();
// `cpu` empty or "host": host_target(); else that CPU of the host's
// architecture, with the features LLVM knows it has. Throws
// std::invalid_argument naming the CPU when LLVM does not know it.
HostTarget target_for_cpu(const std::string& cpu);
// A target machine at -O3 (for the optimizer's cost model, the asm printer and object files).
std::unique_ptr<llvm::TargetMachine> make_target_machine(const HostTarget& t);
std::unique_ptr<llvm::TargetMachine> make_host_target_machine();

}  // namespace kiln::codegen
