// Loop IR kernels -> LLVM functions: preamble (batch size, buffer bases),
// loops (scalar, or vector main loop + scalar tail), parallel regions.
#include <llvm/IR/MDBuilder.h>
#include <llvm/TargetParser/Triple.h>

#include <stdexcept>

#include "compiler/codegen/emitter.h"
#include "compiler/lower/lower_program.h"

namespace kiln::codegen {

using namespace kiln::lower;
using llvm::Value;

// Field numbers of kiln_context (runtime/program.h).
enum CtxField { kArena = 0, kParams = 1, kState = 2, kBatch = 3, kParallelFor = 4, kPool = 5, kParamsEpoch = 6 };

KernelEmitter::KernelEmitter(llvm::Module& m, const Program& p, const EmitOptions& opts)
    : m_(m), c_(m.getContext()), p_(p), opts_(opts), b_(m.getContext()) {
  // No a*b+c -> FMA contraction: LLVM contracts a vector body and its scalar
  // tail differently, and which elements fall in a tail depends on how the
  // threads split the loop, so results would change with the thread count
  // (kiln difftest found it). The GEMM micro-kernel calls fmuladd itself.
  llvm::FastMathFlags fmf;
  fmf.setAllowContract(false);
  b_.setFastMathFlags(fmf);
}

llvm::StructType* KernelEmitter::context_type() {
  if (!ctx_type_) {
    ctx_type_ = llvm::StructType::getTypeByName(c_, "kiln_context");
    if (!ctx_type_) {
      auto* ptr = b_.getPtrTy();
      ctx_type_ = llvm::StructType::create(c_, {ptr, ptr, ptr, b_.getInt64Ty(), ptr, ptr, b_.getInt64Ty()}, "kiln_context");
    }
  }
  return ctx_type_;
}

void KernelEmitter::add_attributes(llvm::Function* f) const {
  f->addFnAttr(llvm::Attribute::NoUnwind);
  if (!opts_.cpu.empty()) f->addFnAttr("target-cpu", opts_.cpu);
  if (!opts_.features.empty()) f->addFnAttr("target-features", opts_.features);
  // Keep wide vectors whole (x86 otherwise splits 512-bit types by default).
  f->addFnAttr("min-legal-vector-width", std::to_string(opts_.lanes * 32));
}

static void collect_buffers(const ExprP& e, std::set<int>& out) {
  if (e->kind == ExprKind::Load) out.insert(e->id);
  for (auto& a : e->args) collect_buffers(a, out);
}

static void collect_buffers(const std::vector<Stmt>& body, std::set<int>& out) {
  for (const Stmt& s : body) {
    if (s.kind == StmtKind::Store) out.insert(s.target);
    for (const ExprP* e : {&s.lo, &s.hi, &s.index, &s.value})
      if (*e) collect_buffers(*e, out);
    collect_buffers(s.body, out);
  }
}

void KernelEmitter::begin_function(llvm::Function* f) {
  fn_ = Fn{};
  fn_.f = f;
  b_.SetInsertPoint(llvm::BasicBlock::Create(c_, "entry", f));
}

// In a function called with a closure: the kernel's ctx, inputs and outputs
// from fields first .. first + 2 of it, then the preamble.
void KernelEmitter::load_kernel_args(llvm::StructType* closure_ty, Value* closure, unsigned first) {
  auto* ptr = b_.getPtrTy();
  fn_.ctx = b_.CreateLoad(ptr, b_.CreateStructGEP(closure_ty, closure, first), "ctx");
  fn_.inputs = b_.CreateLoad(ptr, b_.CreateStructGEP(closure_ty, closure, first + 1), "inputs");
  fn_.outputs = b_.CreateLoad(ptr, b_.CreateStructGEP(closure_ty, closure, first + 2), "outputs");
  finish_preamble();
}

// After fn_.ctx/inputs/outputs are set: the batch size, locals, loop variables.
void KernelEmitter::finish_preamble() {
  fn_.batch = b_.CreateLoad(b_.getInt64Ty(), b_.CreateStructGEP(context_type(), fn_.ctx, kBatch), "batch");
  for (const LocalDecl& l : k_->locals) fn_.locals.push_back(b_.CreateAlloca(scalar_type(l.type), nullptr, l.name));
  fn_.vars.assign(k_->var_names.size(), nullptr);
  for (int id : streamable(*k_)) {
    const Buffer& buf = p_.buffers.at(static_cast<size_t>(id));
    Value* bytes = b_.getInt64(static_cast<uint64_t>(buf.bytes(1)));
    if (std::count(buf.shape.begin(), buf.shape.end(), int64_t{-1})) bytes = b_.CreateMul(bytes, fn_.batch);
    fn_.stream[id] = b_.CreateICmpUGE(bytes, b_.getInt64(static_cast<uint64_t>(kStreamStoreBytes)), "stream");
  }
}

// A store that misses the caches reads its line from memory first (to own
// it), then writes it back: an output far larger than the caches, written
// once by a kernel that never reads it, costs twice its bytes of memory
// traffic. Stored past the caches (x86 non-temporal stores), it costs its
// bytes once; its reader takes it from memory either way. MobileNetV2's
// first expansion at batch 32 writes 154 MB. (The thread pool fences the
// streamed stores before another thread reads them: thread_pool.cpp.)
std::set<int> KernelEmitter::streamable(const Kernel& k) const {
  if (!llvm::Triple(m_.getTargetTriple()).isX86()) return {};
  std::set<int> stored, read;
  std::function<void(const std::vector<Stmt>&)> walk = [&](const std::vector<Stmt>& body) {
    for (const Stmt& s : body) {
      if (s.kind == StmtKind::Store) stored.insert(s.target);
      for (const ExprP& e : {s.lo, s.hi, s.index, s.value})
        if (e) collect_buffers(e, read);
      walk(s.body);
    }
  };
  walk(k.body);
  if (k.kind == KernelKind::Gemm)
    for (int id : {k.gemm.a, k.gemm.b, k.gemm.c, k.gemm.scratch, k.gemm.packed_b}) read.insert(id);
  std::set<int> out;
  for (int id : stored) {
    const Buffer& buf = p_.buffers.at(static_cast<size_t>(id));
    if (read.count(id) || buf.storage != Storage::Arena || buf.is_view() || buf.bytes(p_.max_batch) < kStreamStoreBytes)
      continue;
    out.insert(id);
  }
  return out;
}

Value* KernelEmitter::base_pointer(int id) {
  auto it = fn_.base.find(id);
  if (it != fn_.base.end()) return it->second;
  // Computed once, in the entry block, so it dominates every use.
  llvm::IRBuilderBase::InsertPointGuard guard(b_);
  llvm::BasicBlock& entry = fn_.f->getEntryBlock();
  if (entry.getTerminator()) b_.SetInsertPoint(entry.getTerminator());
  else b_.SetInsertPoint(&entry);
  const Buffer& buf = p_.buffers.at(static_cast<size_t>(id));
  if (buf.is_view()) {
    // Its base's bytes from an element on; aligned as far as the offset keeps the base's alignment.
    Value* from = base_pointer(buf.view_of);
    const int64_t skip = buf.view_offset * static_cast<int64_t>(dtype_size(buf.dtype));
    Value* view = b_.CreateInBoundsGEP(b_.getInt8Ty(), from, b_.getInt64(static_cast<uint64_t>(skip)));
    fn_.base[id] = view;
    return view;
  }
  auto* ptr = b_.getPtrTy();
  Value* base = nullptr;
  int64_t align = dtype_size(buf.dtype);
  auto from_ctx = [&](CtxField field) {
    Value* block = b_.CreateLoad(ptr, b_.CreateStructGEP(context_type(), fn_.ctx, field));
    align = 64;
    return b_.CreateInBoundsGEP(b_.getInt8Ty(), block, b_.getInt64(static_cast<uint64_t>(buf.offset)));
  };
  switch (buf.storage) {
    case Storage::Arena: base = from_ctx(kArena); break;
    case Storage::Param: base = from_ctx(kParams); break;
    case Storage::State: base = from_ctx(kState); break;
    case Storage::Input:
    case Storage::Output: {
      Value* table = buf.storage == Storage::Input ? fn_.inputs : fn_.outputs;
      base = b_.CreateLoad(ptr, b_.CreateConstInBoundsGEP1_64(ptr, table, static_cast<uint64_t>(buf.offset)));
      break;
    }
    case Storage::Constant: {
      std::string gname = "const." + c_identifier(buf.name) + "." + std::to_string(id);
      auto* g = m_.getGlobalVariable(gname, true);
      if (!g) {
        std::vector<llvm::Constant*> values;
        for (double v : buf.data) {
          if (buf.dtype == DType::boolean) values.push_back(b_.getInt8(v != 0));
          else values.push_back(constant(v, scalar_of(buf.dtype)));
        }
        auto* arr_ty = llvm::ArrayType::get(storage_type(buf.dtype), values.size());
        g = new llvm::GlobalVariable(m_, arr_ty, true, llvm::GlobalValue::PrivateLinkage,
                                     llvm::ConstantArray::get(arr_ty, values), gname);
        g->setAlignment(llvm::Align(64));
      }
      base = g;
      align = 64;
      break;
    }
  }
  if (align > 1) b_.CreateAlignmentAssumption(m_.getDataLayout(), base, static_cast<unsigned>(align));
  fn_.base[id] = base;
  return base;
}

void KernelEmitter::tag_access(llvm::Instruction* inst, int buffer) {
  auto s = scope_.find(buffer);
  if (s == scope_.end()) return;
  inst->setMetadata(llvm::LLVMContext::MD_alias_scope, llvm::MDNode::get(c_, {s->second}));
  if (noalias_.at(buffer)) inst->setMetadata(llvm::LLVMContext::MD_noalias, noalias_.at(buffer));
}

llvm::Function* KernelEmitter::emit(const Kernel& kernel) {
  Kernel expanded;
  const Kernel* k = &kernel;
  if (kernel.kind == KernelKind::Gemm && packed_gemm_applies(kernel, p_))
    return kernel.gemm.packs_b ? emit_pack_b(kernel) : emit_packed_gemm(kernel);
  if (kernel.kind == KernelKind::Gemm && (kernel.gemm.packs_b || kernel.gemm.packed_b >= 0))
    throw std::logic_error("kernel " + kernel.name + ": op(B) is packed once, but the gemm does not take the packed path");
  if (kernel.kind == KernelKind::Gemm) {
    expanded = expand_gemm(kernel, p_);
    k = &expanded;
  }
  k_ = k;
  // One alias scope per buffer the kernel touches: every access is known not
  // to alias the other buffers (they are disjoint by construction). A view
  // shares its base's scope: they are the same bytes.
  std::set<int> used;
  collect_buffers(k->body, used);
  scope_.clear();
  noalias_.clear();
  llvm::MDBuilder mdb(c_);
  llvm::MDNode* domain = mdb.createAnonymousAliasScopeDomain(k->name);
  auto bytes_of = [&](int id) {
    const Buffer& b = p_.buffers[static_cast<size_t>(id)];
    return b.is_view() ? b.view_of : id;
  };
  std::map<int, llvm::MDNode*> scope_of_bytes;
  for (int id : used) {
    auto [it, fresh] = scope_of_bytes.try_emplace(bytes_of(id), nullptr);
    if (fresh) it->second = mdb.createAnonymousAliasScope(domain, p_.buffers[static_cast<size_t>(it->first)].name);
    scope_[id] = it->second;
  }
  for (int id : used) {
    std::vector<llvm::Metadata*> others;
    for (auto& [bytes, sc] : scope_of_bytes)
      if (bytes != bytes_of(id)) others.push_back(sc);
    noalias_[id] = others.empty() ? nullptr : llvm::MDNode::get(c_, others);
  }

  auto* ptr = b_.getPtrTy();
  auto* fty = llvm::FunctionType::get(b_.getVoidTy(), {ptr, ptr, ptr}, false);
  auto* f = llvm::Function::Create(fty, llvm::GlobalValue::ExternalLinkage, k->name, m_);
  add_attributes(f);
  f->addFnAttr(llvm::Attribute::NoInline);
  for (unsigned i = 0; i < 3; ++i) f->addParamAttr(i, llvm::Attribute::NoAlias);
  // The node it computes travels with it: `!kiln.node !{graph node, JSON node, what}`.
  f->setMetadata("kiln.node", llvm::MDNode::get(c_, {llvm::MDString::get(c_, k->node), llvm::MDString::get(c_, k->origin),
                                                     llvm::MDString::get(c_, k->comment)}));
  begin_function(f);
  fn_.ctx = f->getArg(0), fn_.inputs = f->getArg(1), fn_.outputs = f->getArg(2);
  finish_preamble();
  int regions = 0;
  for (const Stmt& s : k->body) {
    if (s.kind == StmtKind::Loop && s.parallel) {
      emit_region(s, regions++);
    } else {
      emit_stmt(s);
    }
  }
  b_.CreateRetVoid();
  k_ = nullptr;
  return f;
}

// A parallel top-level loop: its body becomes a region function over
// [begin, end) of the iteration space; the kernel hands it to parallel_for
// with a closure holding the kernel's own arguments.
void KernelEmitter::emit_region(const Stmt& loop, int index) {
  auto* ptr = b_.getPtrTy();
  auto* i64 = b_.getInt64Ty();
  Value* lo = emit_scalar(loop.lo);
  Value* hi = emit_scalar(loop.hi);
  scalar_cache_.clear();
  Value* n = b_.CreateSub(hi, lo, "trips");
  auto* closure_ty = llvm::StructType::get(c_, {ptr, ptr, ptr});
  Value* closure = b_.CreateAlloca(closure_ty);
  b_.CreateStore(fn_.ctx, b_.CreateStructGEP(closure_ty, closure, 0));
  b_.CreateStore(fn_.inputs, b_.CreateStructGEP(closure_ty, closure, 1));
  b_.CreateStore(fn_.outputs, b_.CreateStructGEP(closure_ty, closure, 2));

  auto* rty = llvm::FunctionType::get(b_.getVoidTy(), {ptr, i64, i64}, false);
  auto* region = llvm::Function::Create(rty, llvm::GlobalValue::InternalLinkage,
                                        k_->name + "_p" + std::to_string(index), m_);
  add_attributes(region);
  region->addFnAttr(llvm::Attribute::NoInline);
  Value* pf = b_.CreateLoad(ptr, b_.CreateStructGEP(context_type(), fn_.ctx, kParallelFor));
  Value* pool = b_.CreateLoad(ptr, b_.CreateStructGEP(context_type(), fn_.ctx, kPool));
  auto* pf_ty = llvm::FunctionType::get(b_.getVoidTy(), {ptr, i64, ptr, ptr}, false);
  Fn saved = fn_;
  {
    llvm::IRBuilderBase::InsertPointGuard guard(b_);
    begin_function(region);
    load_kernel_args(closure_ty, region->getArg(0), 0);
    Value* rlo = emit_scalar(loop.lo);
    scalar_cache_.clear();
    emit_loop(loop, b_.CreateAdd(rlo, region->getArg(1)), b_.CreateAdd(rlo, region->getArg(2)));
    b_.CreateRetVoid();
  }
  fn_ = saved;
  b_.CreateCall(pf_ty, pf, {pool, n, region, closure});
}

}  // namespace kiln::codegen
