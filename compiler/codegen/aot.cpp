#include "compiler/codegen/aot.h"

#include <llvm/ADT/SmallString.h>
#include <llvm/Config/llvm-config.h>
#include <llvm/IR/Constants.h>
#include <llvm/IR/GlobalVariable.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Linker/Linker.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>

#include <cctype>
#include <chrono>
#include <set>
#include <stdexcept>

#include "compiler/codegen/compile_cache.h"
#include "runtime/data/sha256.h"

namespace kiln::codegen {

namespace {

using llvm::Constant;

std::string compiled_for(const HostTarget& t) {
  return "kiln 0.1.0, LLVM " LLVM_VERSION_STRING ", " + t.triple + " " + t.cpu;
}

// The kiln_aot_* structs of runtime/aot_program.h as LLVM constants (natural C layout).
class Descriptor {
 public:
  Descriptor(llvm::Module& m, const std::string& prefix) : m_(m), c_(m.getContext()), prefix_(prefix) {
    auto* ptr = llvm::PointerType::getUnqual(c_);
    auto* i32 = llvm::Type::getInt32Ty(c_);
    auto* i64 = llvm::Type::getInt64Ty(c_);
    tensor_ = llvm::StructType::get(c_, {ptr, i32, i32, ptr, i64, i32, i32});
    entry_ = llvm::StructType::get(c_, {ptr, ptr, i32, i32, ptr, ptr});
    program_ = llvm::StructType::get(c_, {i32, i32, i32, i32, ptr, i64, i64, i64, i64, ptr, ptr, ptr, ptr});
  }

  Constant* str(const std::string& s) {
    auto* init = llvm::ConstantDataArray::getString(c_, s);
    return global(init, "str");
  }
  Constant* global(Constant* init, const std::string& what) {
    return new llvm::GlobalVariable(m_, init->getType(), true, llvm::GlobalValue::PrivateLinkage, init,
                                    prefix_ + ".desc." + what);
  }
  Constant* i32(int64_t v) { return llvm::ConstantInt::get(llvm::Type::getInt32Ty(c_), static_cast<uint64_t>(v)); }
  Constant* i64(int64_t v) { return llvm::ConstantInt::get(llvm::Type::getInt64Ty(c_), static_cast<uint64_t>(v)); }
  Constant* null() { return llvm::ConstantPointerNull::get(llvm::PointerType::getUnqual(c_)); }

  Constant* tensor(const std::string& name, DType dt, const Shape& shape, int64_t offset, bool state) {
    Constant* dims = null();
    if (!shape.empty()) {
      std::vector<Constant*> d;
      for (int64_t x : shape) d.push_back(i64(x));
      dims = global(llvm::ConstantArray::get(llvm::ArrayType::get(llvm::Type::getInt64Ty(c_), d.size()), d), "shape");
    }
    return llvm::ConstantStruct::get(tensor_, {str(name), i32(static_cast<int>(dt)), i32(static_cast<int64_t>(shape.size())),
                                               dims, i64(offset), i32(state ? 1 : 0), i32(0)});
  }
  Constant* array(llvm::StructType* t, const std::vector<Constant*>& items, const std::string& what) {
    if (items.empty()) return null();
    return global(llvm::ConstantArray::get(llvm::ArrayType::get(t, items.size()), items), what);
  }
  Constant* tensors(const std::vector<lower::EntryTensor>& ts) {
    std::vector<Constant*> items;
    for (auto& t : ts) items.push_back(tensor(t.name, t.dtype, t.shape, 0, false));
    return array(tensor_, items, "tensors");
  }

  // The descriptor and `<prefix>_program()`, which returns it.
  void emit(const lower::Program& p, const std::string& init_json, const HostTarget& target) {
    std::vector<Constant*> persistent, entries;
    for (int id : p.persistent) {
      const lower::Buffer& b = p.buffers[static_cast<size_t>(id)];
      persistent.push_back(tensor(b.name, b.dtype, b.shape, b.offset, b.storage == lower::Storage::State));
    }
    for (const lower::Entry& e : p.entries) {
      llvm::Function* fn = m_.getFunction(prefix_ + "_" + e.name);
      if (!fn) throw std::logic_error("AOT: entry " + e.name + " was not emitted");
      entries.push_back(llvm::ConstantStruct::get(
          entry_, {str(e.name), fn, i32(static_cast<int64_t>(e.inputs.size())), i32(static_cast<int64_t>(e.outputs.size())),
                   tensors(e.inputs), tensors(e.outputs)}));
    }
    Constant* desc = llvm::ConstantStruct::get(
        program_, {i32(1), i32(static_cast<int64_t>(persistent.size())), i32(static_cast<int64_t>(entries.size())), i32(0),
                   str(p.name), i64(p.max_batch), i64(p.arena_bytes), i64(p.param_bytes), i64(p.state_bytes),
                   array(tensor_, persistent, "persistent"), array(entry_, entries, "entries"), str(init_json),
                   str(compiled_for(target))});
    Constant* g = global(desc, "program");
    auto* fty = llvm::FunctionType::get(llvm::PointerType::getUnqual(c_), false);
    auto* f = llvm::Function::Create(fty, llvm::GlobalValue::ExternalLinkage, prefix_ + "_program", m_);
    llvm::IRBuilder<> b(llvm::BasicBlock::Create(c_, "entry", f));
    b.CreateRet(g);
  }

 private:
  llvm::Module& m_;
  llvm::LLVMContext& c_;
  std::string prefix_;
  llvm::StructType *tensor_, *entry_, *program_;
};

std::string type_text(DType dt, const Shape& shape) {
  std::string s = std::string(dtype_name(dt)) + "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + (shape[i] < 0 ? std::string("N") : std::to_string(shape[i]));
  return s + "]";
}

std::string header_text(const lower::Program& p, const std::string& prefix, const HostTarget& target) {
  std::string up;
  for (char c : prefix) up += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::string h;
  h += "/* Generated by `kiln compile` (" + compiled_for(target) + "): program '" + p.name + "'.\n";
  h += " * Link " + prefix + ".o with kiln_runtime (and -lm). Every entry has the JIT's ABI\n";
  h += " * (runtime/program.h): int32_t fn(kiln_context* ctx, const void* const* inputs, void* const* outputs),\n";
  h += " * tensors row-major, N = ctx->batch (1.." + std::to_string(p.max_batch) + "). A caller that writes params\n";
  h += " * itself (not through kiln::Program::persistent) increments ctx->params_epoch afterwards. */\n";
  h += "#ifndef KILN_AOT_" + up + "_H\n#define KILN_AOT_" + up + "_H\n\n#include <stdint.h>\n\n";
  h += "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n";
  h += "struct kiln_context;\nstruct kiln_aot_program;\n\n";
  h += "#define " + up + "_MAX_BATCH " + std::to_string(p.max_batch) + "\n";
  h += "#define " + up + "_ARENA_BYTES " + std::to_string(p.arena_bytes) + "\n";
  h += "#define " + up + "_PARAM_BYTES " + std::to_string(p.param_bytes) + "\n";
  h += "#define " + up + "_STATE_BYTES " + std::to_string(p.state_bytes) + "\n\n";
  for (const lower::Entry& e : p.entries) {
    h += "/* " + e.name + "(";
    for (size_t i = 0; i < e.inputs.size(); ++i) h += (i ? ", " : "") + e.inputs[i].name + ": " + type_text(e.inputs[i].dtype, e.inputs[i].shape);
    h += ") -> (";
    for (size_t i = 0; i < e.outputs.size(); ++i) h += (i ? ", " : "") + e.outputs[i].name + ": " + type_text(e.outputs[i].dtype, e.outputs[i].shape);
    h += ") */\n";
    h += "int32_t " + prefix + "_" + e.name + "(struct kiln_context* ctx, const void* const* inputs, void* const* outputs);\n";
  }
  h += "\n/* Sizes, tensor tables, entry functions and initializers: kiln::aot_program_info()\n";
  h += " * and kiln::aot_initialize() (runtime/aot_program.h) build and fill a kiln::Program from it. */\n";
  h += "const struct kiln_aot_program* " + prefix + "_program(void);\n\n";
  h += "#ifdef __cplusplus\n}\n#endif\n\n#endif\n";
  return h;
}

std::vector<uint8_t> emit_object(llvm::Module& m, llvm::TargetMachine& tm) {
  std::string object = emit_machine_code(m, tm, true);
  return std::vector<uint8_t>(object.begin(), object.end());
}

}  // namespace

std::string c_identifier_of(const std::string& name) {
  std::string s;
  for (char c : name) s += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) s = "_" + s;
  return s;
}

AotResult compile_aot(const lower::Program& p, const AotOptions& opts) {
  if (opts.prefix.empty() || c_identifier_of(opts.prefix) != opts.prefix)
    throw std::invalid_argument("symbol prefix '" + opts.prefix + "' is not a C identifier (letters, digits, _)");
  auto t0 = std::chrono::steady_clock::now();
  AotResult r;
  r.target = target_for_cpu(opts.codegen.target_cpu);

  std::optional<CompileCache> cache;
  std::string key;
  if (!opts.codegen.cache_dir.empty()) {
    cache.emplace(opts.codegen.cache_dir);
    key = compile_cache_key(p, opts.codegen, r.target, "aot:" + opts.prefix + ":" + opts.init_json);
    r.cache_entry = cache->entry_path(key);
    if (auto blobs = cache->load(key); blobs && blobs->size() == 2) {
      r.object = std::move((*blobs)[0]);
      r.header.assign((*blobs)[1].begin(), (*blobs)[1].end());
      r.cache_hit = true;
      r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      return r;
    }
  }

  // As the JIT does: kernels, GEMM helpers and entries in separate modules,
  // each optimized alone, at its own level (no kernel is inlined into an
  // entry), then linked as they are.
  llvm::LLVMContext context;
  CodegenOptions no_opt = opts.codegen;
  no_opt.optimize = false;
  no_opt.gemm_helpers_imported = true;
  BuiltModule kernels = build_module(p, no_opt, nullptr, false, &context);
  BuiltModule helpers = build_gemm_helpers(p, no_opt, &context);
  BuiltModule entries = build_module(p, no_opt, [](const lower::Kernel&) { return false; }, true, &context);
  auto tm = make_target_machine(r.target);
  if (opts.codegen.optimize)
    for (BuiltModule* bm : {&kernels, &helpers, &entries})
      if (bm->module) optimize_module(*bm->module, *tm);
  llvm::Module& m = *kernels.module;
  for (BuiltModule* bm : {&helpers, &entries})
    if (bm->module && llvm::Linker::linkModules(m, std::move(bm->module)))
      throw std::runtime_error("AOT: linking the kernel, GEMM helper and entry modules failed");

  std::set<std::string> exported;
  for (const lower::Entry& e : p.entries) {
    llvm::Function* f = m.getFunction(entry_symbol(e.name));
    if (!f) throw std::logic_error("AOT: no entry function " + entry_symbol(e.name));
    f->setName(opts.prefix + "_" + e.name);
    exported.insert(f->getName().str());
  }
  // Kernels stay private to the object: two programs' k0_... never collide.
  for (llvm::Function& f : m)
    if (!f.isDeclaration() && !exported.count(f.getName().str())) f.setLinkage(llvm::GlobalValue::InternalLinkage);
  Descriptor(m, opts.prefix).emit(p, opts.init_json, r.target);
  std::string err;
  llvm::raw_string_ostream es(err);
  if (llvm::verifyModule(m, &es)) throw std::logic_error("AOT produced invalid LLVM IR: " + es.str());

  r.object = emit_object(m, *tm);
  r.header = header_text(p, opts.prefix, r.target);
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (cache) cache->store(key, {r.object, std::vector<uint8_t>(r.header.begin(), r.header.end())});
  return r;
}

}  // namespace kiln::codegen
