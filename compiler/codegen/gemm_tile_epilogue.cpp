// The GEMM epilogue in registers. A product one depth block deep normally
// goes from the micro-kernel to a block on the stack, and the epilogue
// (emit_gemm_epilogue) then reads it back, row by row, to compute and store
// its outputs. Over a shallow K (MobileNetV2's 1x1 expansions: K = 16 to 64)
// that second pass costs as much as a third of the product. Here the
// micro-kernel (a variant of the kernel's own, GemmTileEpilogue) runs the
// epilogue's vector body on each accumulator vector as it leaves the K loop:
// the same operations on the same values, so the same bits. A product deeper
// than one block (emit_packed_gemm, gemm_driver.cpp), and an epilogue that
// reads another buffer element by element or calls vector math
// (epilogue_fits_registers, below), keep the block's pass.
#include <algorithm>
#include <functional>

#include "compiler/codegen/emitter.h"
#include "compiler/codegen/gemm_ir.h"
#include "compiler/codegen/gemm_operands.h"
#include "compiler/lower/gemm_epilogue.h"

namespace kiln::codegen {

using namespace kiln::lower;
using llvm::Value;

// Whether `holds` is true of some node of some expression in body (nested loops included).
static bool any_node(const ExprP& e, const std::function<bool(const Expr&)>& holds) {
  if (!e) return false;
  return holds(*e) || std::any_of(e->args.begin(), e->args.end(), [&](const ExprP& a) { return any_node(a, holds); });
}

static bool any_node(const std::vector<Stmt>& body, const std::function<bool(const Expr&)>& holds) {
  return std::any_of(body.begin(), body.end(), [&](const Stmt& s) {
    return any_node(s.value, holds) || any_node(s.index, holds) || any_node(s.body, holds);
  });
}

// Registers only where the epilogue reads no buffer element by element (the
// row varies there): a tile reads such a buffer MR rows of NR floats at a
// time, rows far apart, where the block's pass streams along whole rows.
// The MLP's weight update (W read at each element of its gradient) ran 4-5%
// slower in registers (AVX-512 host).
static bool reads_along_rows(const std::vector<Stmt>& body, int row) {
  return any_node(body, [row](const Expr& e) { return e.kind == ExprKind::Load && mentions_var(e.args[0], row); });
}

// Nor where it calls vector math (exp, tanh, erf...): expanded beside the
// tile's live accumulators it spills them (char_gpt's training step, its
// GELU and softmax epilogues: 143 -> 146-156 ms, AVX-512 host).
static bool calls_vector_math(const std::vector<Stmt>& body) {
  return any_node(body, [](const Expr& e) {
    if (e.kind != ExprKind::Unary && e.kind != ExprKind::Binary) return false;
    for (Op f : {Op::Exp, Op::Log, Op::Sin, Op::Cos, Op::Tanh, Op::Erf, Op::Pow})
      if (e.op == f) return true;
    return false;
  });
}

bool KernelEmitter::epilogue_fits_registers(const Kernel& k, const GemmShape& s) const {
  if (k.body.empty() || k.gemm.accumulate || s.lanes != opts_.lanes || std::getenv("KILN_NO_TILE_EPILOGUE")) return false;
  const Stmt& outer = k.body.at(0);
  const Stmt& loop = element_loop(outer);
  // The row: the nest's outer variable, or the flat loop's own (its index is the element's).
  if (reads_along_rows(loop.body, is_rows_by_columns(outer) ? outer.var : loop.var) || calls_vector_math(loop.body))
    return false;
  return plan_vector_loop(loop).has_value();
}

// In micro-kernel f (its last three parameters: the gemm's closure, the
// tile's first row in the epilogue's flat index, its first column), with
// builder b at the end of the K loop: the epilogue of each of the tile's
// m_eff x n_eff elements, a vector of lanes columns at a time.
void KernelEmitter::emit_tile_epilogue(const Kernel& k, llvm::StructType* closure_ty, llvm::IRBuilder<>& b,
                                       llvm::Function* f, const std::vector<Value*>& sums, Value* m_eff, Value* n_eff,
                                       const GemmShape& s) {
  const VectorPlan plan = *plan_vector_loop(element_loop(k.body.at(0)));
  const int mr = s.mr, nv = s.nr_vecs, lanes = s.lanes;
  const unsigned args = f->arg_size();
  Value *closure = f->getArg(args - 3), *row0 = f->getArg(args - 2), *col0 = f->getArg(args - 1);

  // The emitter's state is the kernel function's: f's own for now.
  const Fn saved = fn_;
  const llvm::IRBuilderBase::InsertPoint ip = b_.saveIP();
  const Kernel* saved_k = k_;
  k_ = &k;
  cache_.clear();
  scalar_cache_.clear();
  fn_ = Fn{};
  fn_.f = f;
  // The kernel's arguments (and base pointers, locals) in f's entry block.
  b_.SetInsertPoint(f->getEntryBlock().getTerminator());
  load_kernel_args(closure_ty, closure, 7);
  b_.SetInsertPoint(b.GetInsertBlock());

  auto element = [&](int i, int v, Value* mask) {
    emit_epilogue_vector(k, plan, b_.CreateAdd(row0, b_.getInt64(static_cast<uint64_t>(i))),
                         b_.CreateAdd(col0, b_.getInt64(static_cast<uint64_t>(v * lanes))),
                         sums[static_cast<size_t>(i * nv + v)], mask);
    cache_.clear();
    scalar_cache_.clear();
  };
  Value* full = b_.CreateAnd(b_.CreateICmpEQ(m_eff, b_.getInt64(static_cast<uint64_t>(mr))),
                             b_.CreateICmpEQ(n_eff, b_.getInt64(static_cast<uint64_t>(s.nr()))));
  gemm_if(b_, full, [&] {
    for (int i = 0; i < mr; ++i)
      for (int v = 0; v < nv; ++v) element(i, v, nullptr);
  }, [&] {
    // An edge tile: its rows below m_eff, its columns below n_eff.
    for (int i = 0; i < mr; ++i)
      gemm_if(b_, b_.CreateICmpSLT(b_.getInt64(static_cast<uint64_t>(i)), m_eff), [&] {
        for (int v = 0; v < nv; ++v) {
          Value* left = b_.CreateSub(n_eff, b_.getInt64(static_cast<uint64_t>(v * lanes)));
          gemm_if(b_, b_.CreateICmpSGT(left, b_.getInt64(0)), [&] { element(i, v, lane_mask(left)); });
        }
      });
  });
  b.SetInsertPoint(b_.GetInsertBlock());
  fn_ = saved;
  k_ = saved_k;
  cache_.clear();
  scalar_cache_.clear();
  b_.restoreIP(ip);
}

void KernelEmitter::emit_epilogue_vector(const Kernel& k, const VectorPlan& plan, Value* row, Value* col,
                                         Value* product, Value* mask) {
  const Stmt& outer = k.body.at(0);
  const Stmt& loop = element_loop(outer);
  // The loop variable of the first lane: (rows x columns) its column, the row
  // the outer variable's; (a flat loop) its flat index.
  Value* first = col;
  if (is_rows_by_columns(outer)) fn_.vars[static_cast<size_t>(outer.var)] = row;
  else first = b_.CreateAdd(b_.CreateMul(row, b_.getInt64(static_cast<uint64_t>(k.gemm.ldc))), col);
  Vec vv;
  vv.var = loop.var;
  vv.plan = &plan;
  for (auto& [l, role] : plan.locals) vv.variant.insert(l);
  vv.i = first;
  fn_.vars[static_cast<size_t>(loop.var)] = first;
  vv.mask = mask;
  vv.temps[k.gemm.epilogue_value] = product;
  emit_vector_body(loop.body, vv);  // the plan has no reductions (gemm_epilogue.cpp)
}

GemmHelpers KernelEmitter::tile_epilogue_helpers(const Kernel& k, llvm::StructType* closure_ty, const GemmShape& s,
                                                 GemmTileEpilogue& te, const GemmHelperOptions& placement) {
  auto* ptr = b_.getPtrTy();
  auto* i64 = b_.getInt64Ty();
  te.suffix = "_" + k.name;
  te.extra = {ptr, i64, i64};
  te.store = [this, &k, closure_ty, s](llvm::IRBuilder<>& b, llvm::Function* f, const std::vector<Value*>& sums,
                                       Value* m_eff, Value* n_eff) {
    emit_tile_epilogue(k, closure_ty, b, f, sums, m_eff, n_eff, s);
  };
  GemmHelperOptions o = placement;
  o.tile_epilogue = &te;
  return gemm_tile_epilogue_helpers_of(m_, k, s, o);
}

}  // namespace kiln::codegen
