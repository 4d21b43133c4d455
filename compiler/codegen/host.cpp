#include "compiler/codegen/host.h"

#include <llvm/ADT/StringMap.h>
#include <llvm/MC/MCSubtargetInfo.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Support/CommandLine.h>
#include <llvm/Support/StringSaver.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Target/TargetOptions.h>
#include <llvm/TargetParser/Host.h>

#include <cstdlib>
#include <mutex>
#include <stdexcept>

namespace kiln::codegen {

static HostTarget detect() {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  // kiln's codegen leaves out loop strength reduction: it took a fifth of
  // the machine-code time of a cold compile (MLP: 100 of 500 ms of CPU), and
  // kiln's hot loops already walk their operands by pointer increments (the
  // micro-kernel's K loop; the B packer's row copy: gemm_for_walk) or by one
  // index that x86 addressing absorbs (emit_loops.cpp). kiln_bench_gemm and
  // kiln profile measured no difference.
  // Then LLVM's own options for whoever studies the compiler, from the
  // environment (later ones win): KILN_LLVM_OPTIONS="-time-passes" (a per-pass
  // compile time report at exit), "-print-after=licm", "-disable-lsr=false"...
  llvm::BumpPtrAllocator alloc;
  llvm::StringSaver saver(alloc);
  llvm::SmallVector<const char*, 8> argv{"kiln", "-disable-lsr"};
  if (const char* env = std::getenv("KILN_LLVM_OPTIONS")) llvm::cl::TokenizeGNUCommandLine(env, saver, argv);
  llvm::cl::ParseCommandLineOptions(static_cast<int>(argv.size()), argv.data(), "kiln", &llvm::errs());
  HostTarget t;
  t.triple = llvm::sys::getProcessTriple();
  t.cpu = llvm::sys::getHostCPUName().str();
  auto features = llvm::sys::getHostCPUFeatures();
  std::string list;
  for (auto& f : features) {
    if (!list.empty()) list += ",";
    list += (f.second ? "+" : "-") + f.first().str();
  }
  t.features = list;
  auto has = [&](const char* name) {
    auto it = features.find(name);
    return it != features.end() && it->second;
  };
  if (has("avx512f")) t.vector_bits = 512;
  else if (has("avx")) t.vector_bits = 256;
  else t.vector_bits = 128;  // SSE2 on x86-64, NEON on AArch64
  t.fma = has("fma") || has("neon");
  return t;
}

const HostTarget& host_target() {
  static const HostTarget t = detect();
  return t;
}

HostTarget target_for_cpu(const std::string& cpu) {
  const HostTarget& host = host_target();
  if (cpu.empty() || cpu == "host" || cpu == host.cpu) return host;
  std::string err;
  const llvm::Target* target = llvm::TargetRegistry::lookupTarget(host.triple, err);
  if (!target) throw std::runtime_error("LLVM has no target for " + host.triple + ": " + err);
  std::unique_ptr<llvm::MCSubtargetInfo> sti(target->createMCSubtargetInfo(host.triple, cpu, ""));
  if (!sti || !sti->isCPUStringValid(cpu))
    throw std::invalid_argument("unknown target CPU '" + cpu + "' for " + host.triple +
                                " (see `llc-19 -mcpu=help`; e.g. x86-64-v3, skylake-avx512, znver4)");
  HostTarget t;
  t.triple = host.triple;
  t.cpu = cpu;
  // No feature string: the target machine derives the features from the CPU name.
  auto has = [&](const char* f) { return sti->checkFeatures(std::string("+") + f); };
  if (has("avx512f")) t.vector_bits = 512;
  else if (has("avx")) t.vector_bits = 256;
  else t.vector_bits = 128;
  const bool arm = llvm::StringRef(t.triple).starts_with("aarch64");
  t.fma = arm ? has("neon") : has("fma");  // (asking x86 about "neon" prints a warning)
  return t;
}

std::unique_ptr<llvm::TargetMachine> make_target_machine(const HostTarget& t) {
  std::string err;
  const llvm::Target* target = llvm::TargetRegistry::lookupTarget(t.triple, err);
  if (!target) throw std::runtime_error("LLVM has no target for " + t.triple + ": " + err);
  llvm::TargetOptions opts;
  std::unique_ptr<llvm::TargetMachine> tm(target->createTargetMachine(
      t.triple, t.cpu, t.features, opts, llvm::Reloc::PIC_, std::nullopt, llvm::CodeGenOptLevel::Aggressive));
  if (!tm) throw std::runtime_error("LLVM could not create a target machine for " + t.cpu);
  return tm;
}

std::unique_ptr<llvm::TargetMachine> make_host_target_machine() { return make_target_machine(host_target()); }

}  // namespace kiln::codegen
