#pragma once
// GEMM epilogues: an elementwise kernel that is the only reader of a gemm's
// product runs inside the gemm, on each finished MC x NC block of the product
// while that block is in L2 (rows streamed: contiguous in every buffer).
//
// The typical case is a weight's optimizer update right after its gradient
// gemm (w -= lr * (dW + 2*lambda*w)): unfused, dW (12 MB for the MLP's first
// layer) is written by the gemm and read back by the update; with the
// epilogue the product never leaves the cache, and the update's pass over
// memory is gone.
//
// Contract. A Gemm kernel whose `body` is non-empty carries an epilogue: one
// loop `for i in [0, M*N)` over C's elements (C is contiguous: ldc == N), or
// a nest `for r in [0, M): for j in [0, N)` over its rows and columns (element
// i = r*N + j), whose body reads the product of element i from the local
// `gemm.epilogue_value`, never from C; every other access is at element i, at
// column j (the nest), or invariant, so the elements may be visited in any
// order. Codegen runs the body per block; the Loop IR expansion stores C,
// then runs the loops.
#include "compiler/lower/loop_ir.h"

namespace kiln::lower {

// Folds every qualifying (gemm, consumer) pair; removes the consumers from
// the entries. Returns the number folded. Runs before plan_memory.
int fuse_gemm_epilogues(Program& p, std::vector<std::string>* why = nullptr);

// The loop of an epilogue (or a candidate consumer) whose body is the
// statements: `outer` itself (flat), or the column loop of a rows x columns nest.
inline bool is_rows_by_columns(const Stmt& outer) { return outer.body.size() == 1 && outer.body[0].kind == StmtKind::Loop; }
inline const Stmt& element_loop(const Stmt& outer) { return is_rows_by_columns(outer) ? outer.body[0] : outer; }
inline Stmt& element_loop(Stmt& outer) { return is_rows_by_columns(outer) ? outer.body[0] : outer; }
// The product's element the statements stand at: the flat loop's variable, or row * ldc + column.
inline ExprP epilogue_element(const Stmt& outer, int64_t ldc) {
  const Stmt& loop = element_loop(outer);
  return is_rows_by_columns(outer) ? binary(Op::Add, binary(Op::Mul, var(outer.var), c_int(ldc)), var(loop.var)) : var(loop.var);
}

}  // namespace kiln::lower
