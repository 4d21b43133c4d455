#pragma once
// Internal to codegen: Loop IR kernels -> LLVM IR functions.
//
// Every kernel becomes `void @<kernel>(ptr ctx, ptr inputs, ptr outputs)`;
// each top-level parallel loop becomes a region `@<kernel>_p<i>(ptr closure,
// i64 begin, i64 end)` handed to ctx->parallel_for. Buffer accesses carry
// scoped-noalias metadata (one scope per buffer), buffer bases carry
// alignment assumptions, and innermost loops that allow it are vectorized
// here (vector main loop + scalar tail) at the host's width.
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Module.h>

#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include "compiler/codegen/codegen.h"
#include "compiler/codegen/vector_plan.h"
#include "compiler/lower/gemm_blocking.h"
#include "compiler/lower/loop_ir.h"

namespace kiln::codegen {

using GemmShape = lower::GemmPlan;  // (gemm_ir.h)
struct GemmTileEpilogue;  // (gemm_ir.h)
struct GemmHelpers;       // (gemm_operands.h)
struct GemmHelperOptions; // (gemm_ir.h)

struct EmitOptions {
  int lanes = 8;  // vector lanes of vectorized loops
  std::string cpu, features;
  bool gemm_helpers_imported = false;  // CodegenOptions::gemm_helpers_imported
};

// The Loop IR expansion of a gemm kernel: a blocked loop nest (pack op(B) when
// transposed, zero C, panels of N in parallel, blocks of K, rows, K, N).
lower::Kernel expand_gemm(const lower::Kernel& gemm, const lower::Program& p);
// Whether a gemm kernel takes the packed register-blocked path (gemm_driver.cpp):
// f32 operands and a packing scratch sized by lower/gemm_blocking.h.
bool packed_gemm_applies(const lower::Kernel& gemm, const lower::Program& p);

class KernelEmitter {
 public:
  KernelEmitter(llvm::Module& m, const lower::Program& p, const EmitOptions& opts);
  llvm::Function* emit(const lower::Kernel& k);
  // Defines, exported, the GEMM helpers the program's packed gemms call
  // (build_gemm_helpers); false when it has none.
  bool emit_gemm_helpers();
  // Declares (once) the struct type of kiln_context.
  llvm::StructType* context_type();
  void add_attributes(llvm::Function* f) const;

 private:
  // State of the function being emitted (a kernel or one of its regions).
  struct Fn {
    llvm::Function* f = nullptr;
    llvm::Value *ctx = nullptr, *inputs = nullptr, *outputs = nullptr, *batch = nullptr;
    std::map<int, llvm::Value*> base;       // buffer id -> base pointer
    std::vector<llvm::AllocaInst*> locals;  // by local id
    std::vector<llvm::Value*> vars;         // loop variable id -> current value
    // Buffers whose full vectors are stored past the caches when this i1
    // holds (at this call's batch they exceed kStreamStoreBytes): emit_store.
    std::map<int, llvm::Value*> stream;
  };
  // The vectorized loop being emitted.
  struct Vec {
    int var = -1;
    llvm::Value* i = nullptr;               // first lane's index
    const VectorPlan* plan = nullptr;
    std::map<int, llvm::Value*> temps;      // Temp locals -> their vector value
    std::map<int, llvm::Value*> acc;        // Reduction locals -> vector accumulators (allocas)
    std::set<int> variant;
    // A loop's last, partial vector: the lanes still inside the loop. Their
    // loads and stores are masked; reductions keep the other lanes' sums.
    llvm::Value* mask = nullptr;
  };

  // The first `count` of opts_.lanes lanes (count < lanes).
  llvm::Value* lane_mask(llvm::Value* count);
  llvm::Function* emit_packed_gemm(const lower::Kernel& k);
  // After a gemm that cut K: its partial products summed, then epilogue or C.
  void emit_split_k_sum(llvm::Value* partials, int64_t floats, llvm::Value* C, llvm::Function* epi, llvm::Value* closure);
  // A kernel that packs op(B) into GemmSpec::packed_b, every depth block, as
  // the product's plan cuts it (run once per parameter load).
  llvm::Function* emit_pack_b(const lower::Kernel& k);
  // The register tile and blocking of a packed gemm kernel (lower::plan_gemm for its shape and our lanes).
  GemmShape gemm_plan(const lower::Kernel& k) const;
  llvm::Function* emit_gemm_epilogue(const lower::Kernel& k, llvm::StructType* closure_ty);
  // The epilogue in registers (gemm_tile_epilogue.cpp): whether k's may run
  // there under plan s, the micro-kernels that run it, and what they emit.
  bool epilogue_fits_registers(const lower::Kernel& k, const GemmShape& s) const;
  // (placement: how the kernel's own helpers are placed; the copy passed on points at te)
  GemmHelpers tile_epilogue_helpers(const lower::Kernel& k, llvm::StructType* closure_ty, const GemmShape& s,
                                    GemmTileEpilogue& te, const GemmHelperOptions& placement);
  void emit_tile_epilogue(const lower::Kernel& k, llvm::StructType* closure_ty, llvm::IRBuilder<>& b, llvm::Function* f,
                          const std::vector<llvm::Value*>& sums, llvm::Value* m_eff, llvm::Value* n_eff,
                          const GemmShape& s);
  // One vector of k's epilogue: the product's values `product` at row `row`,
  // columns from `col` (mask: the lanes inside the row; null: all). Both the
  // block's pass and the tile's registers run it.
  void emit_epilogue_vector(const lower::Kernel& k, const VectorPlan& plan, llvm::Value* row, llvm::Value* col,
                            llvm::Value* product, llvm::Value* mask);
  void begin_function(llvm::Function* f);
  void finish_preamble();
  // The buffers kernel k only writes, in the arena, that may outgrow the caches (finish_preamble).
  std::set<int> streamable(const lower::Kernel& k) const;
  void load_kernel_args(llvm::StructType* closure_ty, llvm::Value* closure, unsigned first);
  llvm::Value* base_pointer(int buffer);
  void emit_region(const lower::Stmt& loop, int index);
  void emit_stmts(const std::vector<lower::Stmt>& body);
  void emit_stmt(const lower::Stmt& s);
  void emit_loop(const lower::Stmt& s, llvm::Value* lo, llvm::Value* hi, bool no_vectorize_md = false);
  void emit_scalar_loop_body(const lower::Stmt& s);
  void emit_vector_body(const std::vector<lower::Stmt>& body, Vec& v);
  void emit_vector_loop(const lower::Stmt& s, const VectorPlan& plan, llvm::Value* lo, llvm::Value* hi);
  void emit_store(int buffer, llvm::Value* index, llvm::Value* value);

  // Expressions: scalar when vec_ is null, else vectors of opts_.lanes.
  llvm::Value* emit(const lower::ExprP& e);
  llvm::Value* emit_scalar(const lower::ExprP& e);
  llvm::Value* emit_uncached(const lower::ExprP& e);
  llvm::Value* emit_load(const lower::Expr& e);
  llvm::Value* emit_unary(lower::Op op, llvm::Value* a, lower::Scalar t);
  llvm::Value* emit_binary(lower::Op op, llvm::Value* a, llvm::Value* b, lower::Scalar t);
  llvm::Value* emit_cast(llvm::Value* a, lower::Scalar from, lower::Scalar to);
  llvm::Value* element_address(int buffer, llvm::Value* index);
  void tag_access(llvm::Instruction* inst, int buffer);

  llvm::Type* scalar_type(lower::Scalar s);
  llvm::Type* storage_type(DType d);
  llvm::Type* lanes_of(llvm::Type* t);
  llvm::Value* splat(llvm::Value* v);
  llvm::Constant* constant(double v, lower::Scalar t);
  llvm::Value* reduction_identity(lower::Op op, lower::Scalar t);

  llvm::Module& m_;
  llvm::LLVMContext& c_;
  const lower::Program& p_;
  EmitOptions opts_;
  llvm::IRBuilder<> b_;
  llvm::StructType* ctx_type_ = nullptr;
  const lower::Kernel* k_ = nullptr;
  Fn fn_;
  Vec* vec_ = nullptr;
  std::unordered_map<const lower::Expr*, llvm::Value*> cache_, scalar_cache_;
  std::vector<const lower::Stmt*> loop_stack_;  // the scalar loops around the statement being emitted
  // A vector loop storing what an enclosing loop (one LLVM does not unroll)
  // loads again on its next trip, at an index that loop does not move.
  bool accumulates_across_trips(const lower::Stmt& loop) const;
  std::map<int, llvm::MDNode*> scope_;      // buffer id -> alias scope of this kernel
  std::map<int, llvm::MDNode*> noalias_;    // buffer id -> list of every other scope
};

}  // namespace kiln::codegen
