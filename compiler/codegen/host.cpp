#include "compiler/codegen/host.h"

#include <llvm/ADT/StringMap.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Target/TargetOptions.h>
#include <llvm/TargetParser/Host.h>

#include <mutex>
#include <stdexcept>

namespace kiln::codegen {

static HostTarget detect() {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
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

std::unique_ptr<llvm::TargetMachine> make_host_target_machine() {
  const HostTarget& t = host_target();
  std::string err;
  const llvm::Target* target = llvm::TargetRegistry::lookupTarget(t.triple, err);
  if (!target) throw std::runtime_error("LLVM has no target for " + t.triple + ": " + err);
  llvm::TargetOptions opts;
  std::unique_ptr<llvm::TargetMachine> tm(target->createTargetMachine(
      t.triple, t.cpu, t.features, opts, llvm::Reloc::PIC_, std::nullopt, llvm::CodeGenOptLevel::Aggressive));
  if (!tm) throw std::runtime_error("LLVM could not create a target machine for " + t.cpu);
  return tm;
}

}  // namespace kiln::codegen
