#pragma once
// Loop IR -> LLVM IR -> machine code for the host. Text views of each stage
// (for `kiln ir --stage llvm|asm`) and the module builder the JIT uses.
#include <functional>
#include <memory>
#include <string>

#include "compiler/lower/loop_ir.h"

namespace llvm {
class LLVMContext;
class Module;
class TargetMachine;
}  // namespace llvm

namespace kiln::codegen {

// An output a kernel only writes is stored past the caches (non-temporal
// stores) from this size on, at the call's batch: past the last-level cache
// a 2-core share of a server, or a Zen CCD, holds, its reader takes it from
// memory anyway. Measured on MobileNetV2 at batch 32 (AVX-512 host): 64 MB
// streams one output (154 MB, 15.5 -> 9.7 ms); 32 MB also the stem's and two
// expansions' (51-58 MB, about 7 -> 5 ms each); 16 MB gained nothing more.
constexpr int64_t kStreamStoreBytes = int64_t{32} << 20;

struct CodegenOptions {
  int vector_bits = 0;     // 0: the target's widest SIMD registers; else 128, 256 or 512
  std::string target_cpu{};  // "" or "host": this machine (all the JIT can run); else an LLVM CPU name
  std::string cache_dir{};   // compile cache folder (compile_cache.h); "" = no cache
  bool optimize = true;    // run LLVM's optimizations (optimize_module)
  // The GEMM's shared functions (micro-kernel, packers) are only declared in
  // the module; build_gemm_helpers defines them (the JIT's split modules).
  bool gemm_helpers_imported = false;
};

struct BuiltModule {
  std::unique_ptr<llvm::LLVMContext> context;
  std::unique_ptr<llvm::Module> module;
  BuiltModule();
  BuiltModule(BuiltModule&&) noexcept;
  ~BuiltModule();
};

// One function per kernel (and per parallel region) and, when `entries`, one
// `int32_t kiln_<entry>(ctx, inputs, outputs)` per entry point. `keep`
// selects kernels (null: all); entries declare the kernels it leaves out.
// `context` non-null: the module lives in it (modules to be linked together
// share one); else in a context of its own (BuiltModule::context).
BuiltModule build_module(const lower::Program& p, const CodegenOptions& opts,
                         const std::function<bool(const lower::Kernel&)>& keep = nullptr, bool entries = true,
                         llvm::LLVMContext* context = nullptr);
// The module defining the GEMM helpers that `p`'s packed gemms call, with
// external linkage, for modules built with gemm_helpers_imported; no module
// (null) when `p` has no packed gemm. `context` as for build_module.
BuiltModule build_gemm_helpers(const lower::Program& p, const CodegenOptions& opts,
                               llvm::LLVMContext* context = nullptr);
// kiln's LLVM pass pipeline, tuned for `tm`, for what the module was built
// for: the kernels' for kernels and entries (built with gemm_helpers_imported),
// the GEMM helpers' for the helpers and for modules that hold them (codegen.cpp
// lists the passes and says why not LLVM's O1/O3).
void optimize_module(llvm::Module& m, llvm::TargetMachine& tm);
std::string module_text(const llvm::Module& m);
std::string module_asm(llvm::Module& m, llvm::TargetMachine& tm);
// The module's machine code for `tm`: an ELF object (AOT) or assembly text.
std::string emit_machine_code(llvm::Module& m, llvm::TargetMachine& tm, bool object);

// Kernels whose name is `selector`, or whose node or JSON node is `selector`,
// or (failing those) whose name contains it.
std::vector<const lower::Kernel*> select_kernels(const lower::Program& p, const std::string& selector);
// The (optimized) LLVM IR or assembly of the selected kernels (all when `selector` is empty).
std::string llvm_ir_text(const lower::Program& p, const std::string& selector, const CodegenOptions& opts = {});
std::string asm_text(const lower::Program& p, const std::string& selector, const CodegenOptions& opts = {});

// The entry point symbol of entry `name`.
inline std::string entry_symbol(const std::string& name) { return "kiln_" + name; }

}  // namespace kiln::codegen
