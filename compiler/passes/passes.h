#pragma once
// The simplification passes. Each takes a verified graph and leaves a verified
// graph computing the same outputs, gradients and updates; each returns
// whether it changed anything. The pass manager runs verify() after each.
#include "compiler/ir/graph.h"

namespace kiln {

// cse: two nodes with the same op, inputs, attributes and type compute the
// same value; every use of the later one reads the earlier one, and the later
// one is removed. Inputs and params are never merged (each is its own value).
bool eliminate_common_subexpressions(Graph& g);

// dce: removes every node that no output, hand-written gradient or update
// needs. Inputs and params always stay: they are the program's interface.
bool eliminate_dead_code(Graph& g);

// fold-constants: a node whose inputs are all constants becomes a constant,
// computed by the interpreter's reference kernel (in f32, as the compiled
// code would); dim_size of a static dimension becomes a constant too. Results
// over kMaxFoldedElements elements are left alone, so a broadcast of zeros
// never turns into a huge literal.
constexpr int64_t kMaxFoldedElements = 4096;
bool fold_constants(Graph& g);

// algebra: x*1, 1*x, x+0, 0+x, x-0, x/1 -> x (only where the result has x's
// type, so a broadcasting identity is kept); neg(neg x) -> x; cast to x's own
// dtype -> x; broadcast or reshape to x's own shape -> x;
// reshape(reshape x) -> reshape x; transpose(transpose x) -> one transpose with
// the composed perm, or x when that is the identity; a 2-D transpose feeding a
// matmul operand becomes that operand's transpose flag; an explicit broadcast
// feeding add/sub/mul/div/maximum is dropped when the op's own broadcasting
// gives the same shape.
bool simplify_algebra(Graph& g);

// fold-scales: mul(contraction(x, W), s), s one value per output channel
// computed from params alone -> contraction(x, W * s); a scalar s moves to
// the smallest input the product is linear in (OpAlgebra::linear_inputs) when
// that is smaller, or through an input as large as it that passes s on to a
// smaller one (compiler/passes/fold_scales.cpp).
bool fold_scales_into_weights(Graph& g);

// factor-sums: sum(x * c) -> sum(x) * c where c (an operand of a
// multiplying op, OpAlgebra::multiplies) is the same along every summed axis
// (OpAlgebra::summed_axes), and sum(f(x)) -> f(sum(x)) for an additive unary
// f (neg). Only where the sum of x has the original sum's type, so the result
// does too. A normalization's gradient then sums values already summed or
// stored, and its products keep one reader (compiler/passes/factor_sums.cpp).
bool factor_sums(Graph& g);

// sink-transposes: ew(T_p(x), c) -> T_p(ew(x, c')) for elementwise ops whose
// other operands are transposes by the same p or small values of params and
// constants alone, so transposes meet and compose away; and reduce(T_p(x),
// A) -> T_q(reduce(x, p[A])) for reductions over attribute axes
// (OpAlgebra::reduced_axes), T_q a reshape when the kept axes keep their
// order (compiler/passes/sink_transposes.cpp).
bool sink_transposes(Graph& g);

// recompute: a value of one elementwise value and scalars, read only by
// elementwise ops of its shape, is computed again in each reader (a copy of
// the chain of such values back to stored ones) and no longer stored, when two
// or more loops read it and the chain costs at most kRecomputeLaneOps
// (OpDef::lane_ops summed). A training step stores what its backward pass
// reads: GELU's x / sqrt(2) and x / 2 were two tensors of the MLP's hidden
// size written by the forward pass and read back, where x alone serves both.
// Runs once after the simplify fixpoint (cse would merge the copies back).
//
// The budget, measured on char_gpt's MLP (AVX-512 host): the copies of x /
// sqrt(2) and x / 2 (one instruction each) made the backward GEMM's epilogue
// faster (3.21 -> 2.63 ms a block). With erf as an erfc fit and an exp (a
// chain of 51) copied too, the forward pass got 0.8 ms a step faster and the
// backward epilogue, which computes an exp already, 2.7 ms slower: the
// budget was 8. erf is now a rational fit of 21 instructions: with GELU's
// chain (x / sqrt(2), erf, 1 + erf: 23) copied, the step stores 34 MB less
// (arena 252 -> 218 MB) and took 125.8 ms against 127.1 (six alternated
// pairs). 24 takes that chain and leaves an exp (28) stored.
inline constexpr int kRecomputeLaneOps = 24;
bool recompute_cheap_values(Graph& g);

// Per node: its value depends on params and constants alone (no step input).
std::vector<bool> param_only_nodes(const Graph& g);

}  // namespace kiln
