#include "compiler/codegen/codegen.h"

#include <algorithm>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Passes/StandardInstrumentations.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Transforms/InstCombine/InstCombine.h>
#include <llvm/Transforms/Scalar/EarlyCSE.h>
#include <llvm/Transforms/Scalar/LICM.h>
#include <llvm/Transforms/Scalar/LoopPassManager.h>
#include <llvm/Transforms/Scalar/LoopUnrollPass.h>
#include <llvm/Transforms/Scalar/SROA.h>
#include <llvm/Transforms/Scalar/SimplifyCFG.h>
#include <llvm/Transforms/Vectorize/SLPVectorizer.h>

#include <stdexcept>

#include "compiler/codegen/emitter.h"
#include "compiler/codegen/host.h"
#include "compiler/lower/lower_program.h"

namespace kiln::codegen {

BuiltModule::BuiltModule() = default;
BuiltModule::BuiltModule(BuiltModule&&) noexcept = default;
BuiltModule::~BuiltModule() = default;

static EmitOptions emit_options(const CodegenOptions& opts, const HostTarget& host) {
  EmitOptions e;
  int bits = opts.vector_bits ? opts.vector_bits : host.vector_bits;
  if (bits != 128 && bits != 256 && bits != 512)
    throw std::runtime_error("vector width must be 128, 256 or 512 bits, got " + std::to_string(bits));
  e.lanes = bits / 32;
  e.cpu = host.cpu;
  e.features = host.features;
  e.gemm_helpers_imported = opts.gemm_helpers_imported;
  return e;
}

// An empty module for the target, in `context` or (null) a context of its own.
static BuiltModule new_module(const std::string& name, const HostTarget& host, llvm::TargetMachine& tm,
                              llvm::LLVMContext* context) {
  BuiltModule out;
  if (!context) {
    out.context = std::make_unique<llvm::LLVMContext>();
    context = out.context.get();
  }
  out.module = std::make_unique<llvm::Module>(name, *context);
  out.module->setTargetTriple(host.triple);
  out.module->setDataLayout(tm.createDataLayout());
  return out;
}

// The module flag that tells optimize_module which pipeline a module gets
// (pipeline_for). Kernel and entry modules: 1; the GEMM helpers
// (micro-kernel, packers), or a module that holds them with kernels: 2.
static constexpr const char* kPipelineFlag = "kiln.pipeline";
enum class Pipeline : uint32_t { Kernels = 1, GemmHelpers = 2 };

static void set_pipeline(llvm::Module& m, Pipeline pipeline) {
  // (Max: AOT links optimized modules of both kinds into one object.)
  m.addModuleFlag(llvm::Module::Max, kPipelineFlag, static_cast<uint32_t>(pipeline));
}

static void verify(llvm::Module& m) {
  std::string err;
  llvm::raw_string_ostream es(err);
  if (llvm::verifyModule(m, &es)) throw std::logic_error("codegen produced invalid LLVM IR: " + es.str());
}

BuiltModule build_gemm_helpers(const lower::Program& p, const CodegenOptions& opts, llvm::LLVMContext* context) {
  const HostTarget host = target_for_cpu(opts.target_cpu);
  auto tm = make_target_machine(host);
  BuiltModule out = new_module(p.name + ".gemm", host, *tm, context);
  set_pipeline(*out.module, Pipeline::GemmHelpers);
  KernelEmitter em(*out.module, p, emit_options(opts, host));
  if (!em.emit_gemm_helpers()) return BuiltModule{};
  verify(*out.module);
  if (opts.optimize) optimize_module(*out.module, *tm);
  return out;
}

BuiltModule build_module(const lower::Program& p, const CodegenOptions& opts,
                         const std::function<bool(const lower::Kernel&)>& keep, bool entries,
                         llvm::LLVMContext* context) {
  const HostTarget host = target_for_cpu(opts.target_cpu);
  auto tm = make_target_machine(host);
  BuiltModule out = new_module(p.name, host, *tm, context);
  llvm::Module& m = *out.module;
  context = &m.getContext();
  set_pipeline(m, opts.gemm_helpers_imported ? Pipeline::Kernels : Pipeline::GemmHelpers);

  KernelEmitter em(m, p, emit_options(opts, host));
  std::vector<llvm::Function*> fns(p.kernels.size(), nullptr);
  for (size_t i = 0; i < p.kernels.size(); ++i)
    if (!keep || keep(p.kernels[i])) fns[i] = em.emit(p.kernels[i]);
  if (entries) {
    llvm::IRBuilder<> b(*context);
    auto* ptr = b.getPtrTy();
    auto* kty = llvm::FunctionType::get(b.getVoidTy(), {ptr, ptr, ptr}, false);
    auto* ety = llvm::FunctionType::get(b.getInt32Ty(), {ptr, ptr, ptr}, false);
    for (const lower::Entry& e : p.entries) {
      auto* f = llvm::Function::Create(ety, llvm::GlobalValue::ExternalLinkage, entry_symbol(e.name), m);
      em.add_attributes(f);
      b.SetInsertPoint(llvm::BasicBlock::Create(*context, "entry", f));
      // Kernels read inputs by the slots of their graph's entries: remap
      // unless this entry's inputs already are those slots.
      llvm::Value* slots = f->getArg(1);
      bool identity = e.slot_count == static_cast<int>(e.input_slot.size());
      for (size_t i = 0; identity && i < e.input_slot.size(); ++i) identity = e.input_slot[i] == static_cast<int>(i);
      if (!identity) {
        auto* arr = llvm::ArrayType::get(ptr, static_cast<uint64_t>(e.slot_count));
        slots = b.CreateAlloca(arr, nullptr, "slots");
        b.CreateStore(llvm::Constant::getNullValue(arr), slots);
        for (size_t i = 0; i < e.input_slot.size(); ++i) {
          llvm::Value* in = b.CreateLoad(ptr, b.CreateConstInBoundsGEP1_64(ptr, f->getArg(1), i));
          b.CreateStore(in, b.CreateConstInBoundsGEP1_64(ptr, slots, static_cast<uint64_t>(e.input_slot[i])));
        }
      }
      auto call = [&](int k) {
        // A kernel built in another module (the JIT compiles modules in parallel) is declared here.
        llvm::FunctionCallee callee = fns[static_cast<size_t>(k)];
        if (!callee) callee = m.getOrInsertFunction(p.kernels[static_cast<size_t>(k)].name, kty);
        b.CreateCall(callee, {f->getArg(0), slots, f->getArg(2)});
      };
      auto* ctx_ty = em.context_type();
      llvm::Value* epoch_field = b.CreateStructGEP(ctx_ty, f->getArg(0), 6, "params_epoch");
      if (e.prepared_epoch >= 0) {
        // Values of params alone: computed again only when the params changed
        // since this entry last computed them (they depend on nothing else,
        // so they all run first).
        llvm::Value* state = b.CreateLoad(ptr, b.CreateStructGEP(ctx_ty, f->getArg(0), 2));
        const int64_t at = p.buffers[static_cast<size_t>(e.prepared_epoch)].offset;
        llvm::Value* done = b.CreateInBoundsGEP(b.getInt8Ty(), state, b.getInt64(static_cast<uint64_t>(at)));
        llvm::Value* epoch = b.CreateLoad(b.getInt64Ty(), epoch_field);
        llvm::Value* stale = b.CreateICmpNE(b.CreateLoad(b.getInt64Ty(), done), epoch);
        auto* prepare = llvm::BasicBlock::Create(*context, "prepare", f);
        auto* run = llvm::BasicBlock::Create(*context, "run", f);
        b.CreateCondBr(stale, prepare, run);
        b.SetInsertPoint(prepare);
        for (int k : e.kernels)
          if (p.kernels[static_cast<size_t>(k)].once_per_params) call(k);
        b.CreateStore(epoch, done);
        b.CreateBr(run);
        b.SetInsertPoint(run);
      }
      for (int k : e.kernels)
        if (!p.kernels[static_cast<size_t>(k)].once_per_params || e.prepared_epoch < 0) call(k);
      if (e.writes_persistent)  // whatever read values of the old params computes them again
        b.CreateStore(b.CreateAdd(b.CreateLoad(b.getInt64Ty(), epoch_field), b.getInt64(1)), epoch_field);
      b.CreateRet(b.getInt32(0));
    }
  }
  verify(m);
  if (opts.optimize) optimize_module(m, *tm);
  return out;
}

// kiln's own pipelines, not LLVM's O1/O3. kiln has already tiled, fused and
// vectorized its loops (emit_loops.cpp; the GEMM's packers and micro-kernel),
// so what LLVM must add is cleanup: promote the few allocas (SROA), fold and
// combine (EarlyCSE, InstCombine), simplify control flow, hoist invariant
// loads out of loops (LICM), and unroll. O1 spent 45 ms of CPU on a module of
// 600 instructions, mostly in passes that found nothing kiln had not done
// (IndVarSimplify, LoopIdiom, LoopDeletion...). These pipelines take the
// MLP's optimization from about 250 ms of CPU to 90, and give the same
// machine code for the kernels a step spends its time in (their sizes in
// `kiln ir --stage asm` within a few instructions; kiln profile of the MLP
// and CNN steps: no kernel slower beyond the machine's noise).
// - Unrolling: for kernels as at O1 (the loop overhead of short elementwise
//   bodies); for the GEMM helpers as at O3, which honours the micro-kernel's
//   unroll-by-4 request.
// - SLP merges scalar copies into vector moves: the packers' edges, the
//   im2col of a one-channel image.
static llvm::FunctionPassManager pipeline_for(Pipeline pipeline) {
  auto licm = [] {
    return llvm::createFunctionToLoopPassAdaptor(llvm::LICMPass(llvm::LICMOptions()), /*UseMemorySSA=*/true);
  };
  llvm::FunctionPassManager fpm;
  fpm.addPass(llvm::SROAPass(llvm::SROAOptions::ModifyCFG));
  fpm.addPass(llvm::EarlyCSEPass());
  fpm.addPass(llvm::InstCombinePass());
  fpm.addPass(llvm::SimplifyCFGPass());
  fpm.addPass(licm());
  fpm.addPass(llvm::LoopUnrollPass(llvm::LoopUnrollOptions(pipeline == Pipeline::GemmHelpers ? 3 : 1)));
  // Again after unrolling: an unrolled inner loop leaves fixed addresses (a
  // pooling window's running max), which LICM now keeps in registers, and
  // copies of its address arithmetic, which CSE merges so that SLP sees
  // neighbouring scalar copies as one vector.
  fpm.addPass(licm());
  fpm.addPass(llvm::EarlyCSEPass());
  fpm.addPass(llvm::InstCombinePass());
  fpm.addPass(llvm::SLPVectorizerPass());
  fpm.addPass(llvm::InstCombinePass());
  fpm.addPass(llvm::SimplifyCFGPass());
  return fpm;
}

void optimize_module(llvm::Module& m, llvm::TargetMachine& tm) {
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  // Honours LLVM's own debugging options (KILN_LLVM_OPTIONS, host.cpp), e.g.
  // -time-passes or -print-after=<pass>.
  llvm::PassInstrumentationCallbacks pic;
  llvm::StandardInstrumentations si(m.getContext(), /*DebugLogging=*/false);
  si.registerCallbacks(pic, &mam);
  llvm::PassBuilder pb(&tm, llvm::PipelineTuningOptions(), std::nullopt, &pic);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  auto* flag = llvm::mdconst::extract_or_null<llvm::ConstantInt>(m.getModuleFlag(kPipelineFlag));
  const Pipeline pipeline = flag && flag->getZExtValue() == static_cast<uint32_t>(Pipeline::Kernels)
                                ? Pipeline::Kernels
                                : Pipeline::GemmHelpers;
  llvm::ModulePassManager mpm;
  mpm.addPass(llvm::createModuleToFunctionPassAdaptor(pipeline_for(pipeline)));
  mpm.run(m, mam);
}

std::string module_text(const llvm::Module& m) {
  std::string s;
  llvm::raw_string_ostream os(s);
  m.print(os, nullptr);
  return os.str();
}

std::string emit_machine_code(llvm::Module& m, llvm::TargetMachine& tm, bool object) {
  llvm::SmallString<0> buf;
  llvm::raw_svector_ostream os(buf);
  llvm::legacy::PassManager pm;
  if (tm.addPassesToEmitFile(pm, os, nullptr,
                             object ? llvm::CodeGenFileType::ObjectFile : llvm::CodeGenFileType::AssemblyFile))
    throw std::runtime_error(std::string("LLVM cannot emit ") + (object ? "an object file" : "assembly") + " for " +
                             m.getTargetTriple());
  pm.run(m);
  return std::string(buf.str());
}

std::string module_asm(llvm::Module& m, llvm::TargetMachine& tm) { return emit_machine_code(m, tm, false); }

std::vector<const lower::Kernel*> select_kernels(const lower::Program& p, const std::string& selector) {
  std::vector<const lower::Kernel*> out;
  for (auto& k : p.kernels)
    if (selector.empty() || k.name == selector || k.node == selector || k.origin == selector) out.push_back(&k);
  // Part of a name: a kernel is named after the node it was made for, which
  // a kernel that took in its consumer (a gemm epilogue) no longer carries.
  if (out.empty())
    for (auto& k : p.kernels)
      if (k.name.find(selector) != std::string::npos || k.name.find(lower::c_identifier(selector)) != std::string::npos)
        out.push_back(&k);
  // A kernel packing a gemm's B once (lower_program.cpp) comes with that gemm.
  for (size_t i = 0, n = out.size(); i < n; ++i)
    if (out[i]->kind == lower::KernelKind::Gemm && out[i]->gemm.packs_b)
      for (auto& k : p.kernels)
        if (k.kind == lower::KernelKind::Gemm && !k.gemm.packs_b && k.gemm.packed_b == out[i]->gemm.packed_b &&
            std::find(out.begin(), out.end(), &k) == out.end())
          out.push_back(&k);
  return out;
}

static std::function<bool(const lower::Kernel&)> keep_selected(const lower::Program& p, const std::string& selector) {
  auto chosen = select_kernels(p, selector);
  if (chosen.empty()) {
    std::string names;
    for (auto& k : p.kernels) names += "\n  " + k.name;
    throw std::runtime_error("no kernel matches '" + selector + "'; the kernels are:" + names);
  }
  return [chosen](const lower::Kernel& k) {
    for (auto* c : chosen)
      if (c == &k) return true;
    return false;
  };
}

// The modules the JIT would compile for the selected kernels (codegen
// options as given, helpers imported), optimized: the kernels (and, for all
// of them, the entries) and, when a selected kernel is a packed gemm, the
// GEMM helpers.
static std::vector<BuiltModule> modules_for_text(const lower::Program& p, const std::string& selector,
                                                 const CodegenOptions& opts) {
  CodegenOptions split = opts;
  split.gemm_helpers_imported = true;
  auto keep = keep_selected(p, selector);
  std::vector<BuiltModule> out;
  out.push_back(build_module(p, split, keep, selector.empty()));
  bool gemm = false;
  for (const lower::Kernel& k : p.kernels) gemm = gemm || (keep(k) && k.kind == lower::KernelKind::Gemm);
  if (gemm)
    if (BuiltModule helpers = build_gemm_helpers(p, split); helpers.module) out.push_back(std::move(helpers));
  return out;
}

std::string llvm_ir_text(const lower::Program& p, const std::string& selector, const CodegenOptions& opts) {
  std::string text;
  for (BuiltModule& bm : modules_for_text(p, selector, opts)) text += module_text(*bm.module);
  return text;
}

std::string asm_text(const lower::Program& p, const std::string& selector, const CodegenOptions& opts) {
  auto tm = make_target_machine(target_for_cpu(opts.target_cpu));
  std::string text;
  for (BuiltModule& bm : modules_for_text(p, selector, opts)) text += module_asm(*bm.module, *tm);
  return text;
}

}  // namespace kiln::codegen
