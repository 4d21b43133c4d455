#include "compiler/codegen/jit.h"

#include "compiler/passes/pass_manager.h"
#include "compiler/ops/registry.h"

#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/ExecutionEngine/Orc/ObjectTransformLayer.h>
#include <llvm/ExecutionEngine/Orc/ThreadSafeModule.h>
#include <llvm/Object/ObjectFile.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/Error.h>
#include <llvm/Support/MemoryBuffer.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <ctime>
#include <thread>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>

#include "compiler/codegen/compile_cache.h"
#include "compiler/codegen/host.h"

namespace kiln::codegen {

using Clock = std::chrono::steady_clock;
static double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// CPU time of the calling thread (compile threads share busy cores; wall time would overstate).
static int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

template <typename T>
static T take(llvm::Expected<T> v, const std::string& what) {
  if (!v) throw std::runtime_error(what + ": " + llvm::toString(v.takeError()));
  return std::move(*v);
}

CompiledProgram::~CompiledProgram() = default;

// The global functions an object file defines.
static std::vector<std::string> global_functions(llvm::StringRef bytes) {
  auto obj = llvm::object::ObjectFile::createObjectFile(llvm::MemoryBufferRef(bytes, "cached"));
  if (!obj) throw std::runtime_error("a compile cache object is unreadable: " + llvm::toString(obj.takeError()));
  std::vector<std::string> out;
  for (const llvm::object::SymbolRef& sym : (*obj)->symbols()) {
    auto flags = sym.getFlags();
    auto type = sym.getType();
    auto name = sym.getName();
    if (!flags || !type || !name) {
      if (!flags) llvm::consumeError(flags.takeError());
      if (!type) llvm::consumeError(type.takeError());
      if (!name) llvm::consumeError(name.takeError());
      continue;
    }
    if ((*flags & llvm::object::SymbolRef::SF_Global) && !(*flags & llvm::object::SymbolRef::SF_Undefined) &&
        *type == llvm::object::SymbolRef::ST_Function)
      out.push_back(name->str());
  }
  return out;
}

// The kernel modules, the GEMM helper module and the entry module of `p`,
// unoptimized. Kernels go into several modules, which the JIT optimizes (the
// kernels' pipeline) and compiles on its own threads; the helpers every gemm
// calls (micro-kernel, packers) are compiled once, in a module of their own
// (the helpers' pipeline); one more module holds the entry points.
static std::vector<BuiltModule> build_modules(const lower::Program& p, const CodegenOptions& opts, size_t parts) {
  CodegenOptions no_opt = opts;
  no_opt.optimize = false;
  no_opt.gemm_helpers_imported = true;
  std::vector<BuiltModule> modules;
  // First: the largest, so a compile thread starts on it first.
  if (BuiltModule helpers = build_gemm_helpers(p, no_opt); helpers.module) modules.push_back(std::move(helpers));
  for (size_t part = 0; part < parts; ++part) {
    std::map<const lower::Kernel*, bool> mine;
    for (size_t k = part; k < p.kernels.size(); k += parts) mine[&p.kernels[k]] = true;
    modules.push_back(build_module(p, no_opt, [&](const lower::Kernel& k) { return mine.count(&k) > 0; }, false));
  }
  modules.push_back(build_module(p, no_opt, [](const lower::Kernel&) { return false; }, true));
  return modules;
}

std::unique_ptr<CompiledProgram> CompiledProgram::compile(lower::Program program, const CodegenOptions& opts) {
  std::unique_ptr<CompiledProgram> cp(new CompiledProgram);
  cp->program_ = std::move(program);
  const lower::Program& p = cp->program_;
  const HostTarget& host = host_target();
  if (target_for_cpu(opts.target_cpu).cpu != host.cpu)
    throw std::invalid_argument("the JIT runs code for this CPU (" + host.cpu + ") only, not " + opts.target_cpu +
                                ": compile ahead of time (`kiln compile ... -o DIR --target-cpu " + opts.target_cpu + "`)");
  const unsigned threads = std::clamp(std::thread::hardware_concurrency(), 1u, 8u);

  // A cache hit loads the objects a previous compile of this program produced.
  std::optional<CompileCache> cache;
  std::string key;
  std::optional<std::vector<Blob>> cached;
  if (!opts.cache_dir.empty()) {
    cache.emplace(opts.cache_dir);
    key = compile_cache_key(p, opts, host, "jit");
    cp->stats_.cache_entry = cache->entry_path(key);
    cached = cache->load(key);
    cp->stats_.cache_hit = cached.has_value();
  }

  std::vector<BuiltModule> modules;
  auto t0 = Clock::now();
  if (!cached) modules = build_modules(p, opts, std::min<size_t>(p.kernels.size(), threads > 1 ? 2 * threads : 1));
  cp->stats_.emit_ms = ms_since(t0);

  auto t1 = Clock::now();
  auto jtmb = llvm::orc::JITTargetMachineBuilder(llvm::Triple(host.triple));
  jtmb.setCPU(host.cpu);
  std::vector<std::string> features;
  for (size_t pos = 0; pos < host.features.size();) {
    size_t comma = host.features.find(',', pos);
    if (comma == std::string::npos) comma = host.features.size();
    features.push_back(host.features.substr(pos, comma - pos));
    pos = comma + 1;
  }
  jtmb.addFeatures(features);
  jtmb.setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
  llvm::orc::LLJITBuilder builder;
  builder.setJITTargetMachineBuilder(std::move(jtmb));
  if (threads > 1) builder.setNumCompileThreads(threads);
  cp->jit_ = std::shared_ptr<llvm::orc::LLJIT>(take(builder.create(), "creating the JIT"));
  auto optimize_ns = std::make_shared<std::atomic<int64_t>>(0);
  if (opts.optimize && !cached) {
    cp->jit_->getIRTransformLayer().setTransform(
        [optimize_ns](llvm::orc::ThreadSafeModule tsm, llvm::orc::MaterializationResponsibility&)
            -> llvm::Expected<llvm::orc::ThreadSafeModule> {
          int64_t start = thread_cpu_ns();
          tsm.withModuleDo([](llvm::Module& m) {
            auto tm = make_host_target_machine();
            optimize_module(m, *tm);
          });
          *optimize_ns += thread_cpu_ns() - start;
          return tsm;  // implicitly moved into the Expected
        });
  }
  // On a miss with a cache, keep a copy of every object the JIT compiles (one per module).
  struct Captured {
    std::mutex mu;
    std::vector<Blob> objects;
  };
  auto captured = std::make_shared<Captured>();
  if (cache && !cached)
    cp->jit_->getObjTransformLayer().setTransform(
        [captured](std::unique_ptr<llvm::MemoryBuffer> obj) -> llvm::Expected<std::unique_ptr<llvm::MemoryBuffer>> {
          std::lock_guard<std::mutex> lock(captured->mu);
          captured->objects.emplace_back(obj->getBufferStart(), obj->getBufferEnd());
          return obj;
        });
  // What each module or cached object defines for the others (kernels, GEMM
  // helpers, entries). Object symbols are linker names already; IR names are mangled.
  auto& es = cp->jit_->getExecutionSession();
  std::vector<llvm::orc::SymbolLookupSet> defined;
  if (cached) {
    for (size_t i = 0; i < cached->size(); ++i) {
      llvm::StringRef bytes(reinterpret_cast<const char*>((*cached)[i].data()), (*cached)[i].size());
      defined.emplace_back();
      for (const std::string& name : global_functions(bytes)) defined.back().add(es.intern(name));
      if (auto err = cp->jit_->addObjectFile(llvm::MemoryBuffer::getMemBufferCopy(bytes, "cached" + std::to_string(i))))
        throw std::runtime_error("loading cache entry " + cp->stats_.cache_entry + ": " + llvm::toString(std::move(err)) +
                                 " (delete it, or compile with --no-cache)");
    }
  }
  for (BuiltModule& bm : modules) {
    defined.emplace_back();
    for (const llvm::Function& f : *bm.module)
      if (!f.isDeclaration() && f.hasExternalLinkage()) defined.back().add(cp->jit_->mangleAndIntern(f.getName()));
  }
  for (BuiltModule& bm : modules)
    if (auto err = cp->jit_->addIRModule(llvm::orc::ThreadSafeModule(std::move(bm.module), std::move(bm.context))))
      throw std::runtime_error("adding a module to the JIT: " + llvm::toString(std::move(err)));
  // One lookup per module (or object), all in flight at once, issued in the
  // modules' order: the compile threads take the modules in that order (the
  // GEMM helpers, the largest, first) and compile them concurrently. And
  // every one is finished code when compile returns: a call from one module
  // into another must not reach code still being linked (looking up an entry
  // alone waits for its own module, not for the kernels it calls).
  llvm::orc::JITDylibSearchOrder order{{&cp->jit_->getMainJITDylib(), llvm::orc::JITDylibLookupFlags::MatchAllSymbols}};
  std::vector<std::future<std::string>> compiled;
  for (llvm::orc::SymbolLookupSet& symbols : defined) {
    if (symbols.empty()) continue;
    auto done = std::make_shared<std::promise<std::string>>();
    compiled.push_back(done->get_future());
    es.lookup(llvm::orc::LookupKind::Static, order, std::move(symbols), llvm::orc::SymbolState::Ready,
              [done](llvm::Expected<llvm::orc::SymbolMap> r) { done->set_value(r ? "" : llvm::toString(r.takeError())); },
              llvm::orc::NoDependenciesToRegister);
  }
  std::string failure;
  for (auto& f : compiled)
    if (std::string err = f.get(); !err.empty() && failure.empty()) failure = err;
  if (!failure.empty()) throw std::runtime_error("compiling the kernels: " + failure);
  for (const lower::Entry& e : p.entries) {
    auto addr = take(cp->jit_->lookup(entry_symbol(e.name)), "looking up entry " + e.name);
    cp->entries_[e.name] = addr.toPtr<kiln_entry_fn>();
  }
  cp->stats_.jit_ms = ms_since(t1);
  cp->stats_.optimize_cpu_ms = static_cast<double>(optimize_ns->load()) / 1e6;
  cp->stats_.threads = static_cast<int>(threads);
  if (cache && !cached) {
    std::lock_guard<std::mutex> lock(captured->mu);
    cache->store(key, captured->objects);
  }

  cp->stats_.kernels = p.kernels.size();
  cp->stats_.arena_bytes = p.arena_bytes;
  cp->stats_.intermediate_bytes = p.intermediate_bytes;
  cp->stats_.param_bytes = p.param_bytes;
  cp->stats_.state_bytes = p.state_bytes;
  for (auto& b : p.buffers)
    if (b.storage == lower::Storage::Constant) cp->stats_.constant_bytes += b.bytes(1);
  return cp;
}

static TensorInfo tensor_info(const std::string& name, DType dt, const Shape& shape) {
  TensorInfo t;
  t.name = name;
  t.type = static_cast<ElemType>(static_cast<int32_t>(dt));
  t.shape = shape;
  return t;
}

static kiln_kernel_fn lookup_kernel(llvm::orc::LLJIT& jit, const std::string& name) {
  return take(jit.lookup(name), "looking up kernel " + name).toPtr<kiln_kernel_fn>();
}

ProgramInfo CompiledProgram::info() const {
  const lower::Program& p = program_;
  ProgramInfo info;
  info.name = p.name;
  info.max_batch = p.max_batch;
  info.arena_bytes = p.arena_bytes;
  info.param_bytes = p.param_bytes;
  info.state_bytes = p.state_bytes;
  for (int id : p.persistent) {
    const lower::Buffer& b = p.buffers[static_cast<size_t>(id)];
    TensorInfo t = tensor_info(b.name, b.dtype, b.shape);
    t.offset = b.offset;
    t.state = b.storage == lower::Storage::State;
    info.persistent.push_back(t);
  }
  for (const lower::Entry& e : p.entries) {
    EntryInfo ei;
    ei.name = e.name;
    ei.fn = entries_.at(e.name);
    for (auto& t : e.inputs) ei.inputs.push_back(tensor_info(t.name, t.dtype, t.shape));
    for (auto& t : e.outputs) ei.outputs.push_back(tensor_info(t.name, t.dtype, t.shape));
    for (int id : e.written) ei.writes.push_back(p.buffers[static_cast<size_t>(id)].name);
    ei.input_slot = e.input_slot;
    ei.slot_count = e.slot_count;
    ei.writes_persistent = e.writes_persistent;
    ei.rows_mixed = e.rows_mixed;
    for (int k : e.kernels) ei.kernels.push_back(p.kernels[static_cast<size_t>(k)].name);
    for (size_t j = 0; e.graph && j < e.kernels.size(); ++j) {
      const lower::Kernel& k = p.kernels[static_cast<size_t>(e.kernels[j])];
      const NodeId node = e.graph->find(k.node);
      const OpDef* def = node == kNoNode ? nullptr : OpRegistry::get().find(e.graph->node(node).op);
      if (!def || !def->sums_over_ranks) continue;
      const lower::Buffer& out = p.buffers.at(static_cast<size_t>(k.writes.at(0)));
      if (out.storage != lower::Storage::Arena || out.dtype != DType::f32)
        throw std::runtime_error("cross_rank_sum '" + k.node + "' does not write an f32 arena buffer");
      ei.rank_sums.push_back({static_cast<int>(j + 1), out.offset, numel(out.shape)});
    }
    for (const lower::EntryTensor& t : e.outputs) {
      int ready = 0;  // after the last kernel that writes the output's buffer
      for (size_t j = 0; j < e.kernels.size(); ++j)
        for (int w : p.kernels[static_cast<size_t>(e.kernels[j])].writes)
          if (w == t.buffer) ready = static_cast<int>(j + 1);
      ei.output_ready.push_back(ready > 0 ? ready : static_cast<int>(e.kernels.size()));  // unknown: at the end
    }
    info.entries.push_back(std::move(ei));
  }
  info.code = jit_;
  info.kernel = [jit = jit_](const std::string& name) { return lookup_kernel(*jit, name); };
  return info;
}

kiln_kernel_fn CompiledProgram::kernel(const std::string& name) const { return lookup_kernel(*jit_, name); }

std::unique_ptr<CompiledProgram> compile_entries(const std::string& name, const std::vector<lower::EntrySpec>& entries,
                                                 const lower::LowerOptions& lopts, const CodegenOptions& copts) {
  auto t0 = Clock::now();
  lower::Program p = lower::lower_program(name, entries, lopts);
  double lower_ms = ms_since(t0);
  auto cp = CompiledProgram::compile(std::move(p), copts);
  cp->stats().lower_ms = lower_ms;
  return cp;
}

// ---- values <-> bytes ----

std::vector<uint8_t> to_bytes(const interp::Value& v, DType dtype) {
  size_t es = dtype_size(dtype);
  std::vector<uint8_t> out(v.data.size() * es);
  for (size_t i = 0; i < v.data.size(); ++i) {
    double x = v.data[i];
    uint8_t* dst = out.data() + i * es;
    switch (dtype) {
      case DType::f32: { float f = static_cast<float>(x); std::memcpy(dst, &f, 4); break; }
      case DType::f64: std::memcpy(dst, &x, 8); break;
      case DType::i32: { int32_t n = static_cast<int32_t>(x); std::memcpy(dst, &n, 4); break; }
      case DType::i64: { int64_t n = static_cast<int64_t>(x); std::memcpy(dst, &n, 8); break; }
      case DType::boolean: *dst = x != 0; break;
    }
  }
  return out;
}

interp::Value from_bytes(const void* data, DType dtype, const Shape& shape) {
  interp::Value v;
  v.dtype = dtype;
  v.shape = shape;
  int64_t n = numel(shape);
  v.data.resize(static_cast<size_t>(n));
  const auto* src = static_cast<const uint8_t*>(data);
  size_t es = dtype_size(dtype);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* p = src + static_cast<size_t>(i) * es;
    double& x = v.data[static_cast<size_t>(i)];
    switch (dtype) {
      case DType::f32: { float f; std::memcpy(&f, p, 4); x = f; break; }
      case DType::f64: std::memcpy(&x, p, 8); break;
      case DType::i32: { int32_t k; std::memcpy(&k, p, 4); x = k; break; }
      case DType::i64: { int64_t k; std::memcpy(&k, p, 8); x = static_cast<double>(k); break; }
      case DType::boolean: x = *p != 0; break;
    }
  }
  return v;
}

static Shape bind(const std::vector<int64_t>& shape, int64_t batch) {
  Shape s = shape;
  for (auto& d : s)
    if (d < 0) d = batch;
  return s;
}

std::map<std::string, interp::Value> run_entry(Program& prog, const std::string& entry, int64_t batch,
                                               const std::map<std::string, interp::Value>& feeds) {
  const EntryInfo* e = prog.entry(entry);
  if (!e) throw std::runtime_error("no entry point '" + entry + "'");
  for (const TensorInfo& t : prog.info().persistent) {
    auto it = feeds.find(t.name);
    if (it == feeds.end()) continue;
    auto bytes = to_bytes(it->second, static_cast<DType>(t.type));
    if (static_cast<int64_t>(bytes.size()) != t.bytes(1))
      throw std::runtime_error("value for '" + t.name + "' has " + std::to_string(it->second.size()) + " elements");
    std::memcpy(prog.persistent(t.name), bytes.data(), bytes.size());
  }
  std::vector<std::vector<uint8_t>> in_bytes, out_bytes;
  std::vector<const void*> ins;
  std::vector<void*> outs;
  for (const TensorInfo& t : e->inputs) {
    auto it = feeds.find(t.name);
    if (it == feeds.end()) throw std::runtime_error(entry + " needs input '" + t.name + "'");
    in_bytes.push_back(to_bytes(it->second, static_cast<DType>(t.type)));
    if (static_cast<int64_t>(in_bytes.back().size()) != t.bytes(batch))
      throw std::runtime_error("input '" + t.name + "' has " + std::to_string(it->second.size()) +
                               " elements, expected " + std::to_string(t.bytes(batch) / elem_size(t.type)));
    ins.push_back(in_bytes.back().data());
  }
  for (const TensorInfo& t : e->outputs) {
    out_bytes.emplace_back(static_cast<size_t>(t.bytes(batch)) + 1);
    outs.push_back(out_bytes.back().data());
  }
  prog.run(entry, batch, ins, outs);
  std::map<std::string, interp::Value> result;
  for (size_t i = 0; i < e->outputs.size(); ++i) {
    const TensorInfo& t = e->outputs[i];
    result[t.name] = from_bytes(out_bytes[i].data(), static_cast<DType>(t.type), bind(t.shape, batch));
  }
  return result;
}

ForwardProgram compile_forward(const Graph& g, const std::map<std::string, interp::Value>& feeds,
                               const std::vector<std::string>& fetch) {
  ForwardProgram out;
  out.graph = std::make_unique<Graph>(g);
  run_pipeline(*out.graph, "simplify");
  for (NodeId id : g.inputs()) {
    auto it = feeds.find(g.node(id).name);
    if (has_open_dim(g.node(id).type.shape) && it != feeds.end() && !it->second.shape.empty())
      out.batch = it->second.shape[0];
  }
  out.program =
      compile_entries(g.name, {{"eval_step", out.graph.get(), fetch, {}}}, {.max_batch = std::max<int64_t>(out.batch, 1)});
  return out;
}

std::map<std::string, interp::Value> run_forward(const Graph& g, const std::map<std::string, interp::Value>& feeds,
                                                 const std::vector<std::string>& fetch) {
  ForwardProgram f = compile_forward(g, feeds, fetch);
  Program prog(f.program->info());
  return run_entry(prog, "eval_step", f.batch, feeds);
}

}  // namespace kiln::codegen
