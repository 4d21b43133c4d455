#include "compiler/lower/split_reduction.h"

#include <algorithm>

namespace kiln::lower {

namespace {

// The fold `acc = acc op x` (or `x op acc`) with op Add/Max/Min: the operand x.
ExprP fold_operand(const Stmt& s, int acc) {
  if (s.kind != StmtKind::Assign || s.target != acc) return nullptr;
  const ExprP& v = s.value;
  if (v->kind != ExprKind::Binary || (v->op != Op::Add && v->op != Op::Max && v->op != Op::Min)) return nullptr;
  const ExprP &x = v->args[0], &y = v->args[1];
  if (x->kind == ExprKind::Local && x->id == acc && !mentions_local(y, acc)) return y;
  if (y->kind == ExprKind::Local && y->id == acc && !mentions_local(x, acc)) return x;
  return nullptr;
}

// The kernel's shape, when it is a full reduction this pass can split:
//   acc = <constant>; for r in [0, n): { temps...; acc = acc op x }; out[i] = acc
struct FullReduction {
  int acc = -1;
  Op op = Op::Add;
  int64_t n = 0;
};

std::optional<FullReduction> match(const Kernel& k) {
  if (k.kind != KernelKind::Loops || k.body.size() != 3) return std::nullopt;
  const Stmt &init = k.body[0], &loop = k.body[1], &store = k.body[2];
  if (init.kind != StmtKind::Assign || !is_const(init.value)) return std::nullopt;
  if (loop.kind != StmtKind::Loop || loop.parallel || !is_const(loop.lo) || loop.lo->ival != 0 || !is_const(loop.hi))
    return std::nullopt;
  if (store.kind != StmtKind::Store || store.value->kind != ExprKind::Local || store.value->id != init.target ||
      !is_const(store.index))
    return std::nullopt;
  FullReduction r;
  r.acc = init.target;
  r.n = loop.hi->ival;
  if (r.n < kSplitReductionMin) return std::nullopt;
  int folds = 0;
  for (const Stmt& s : loop.body) {
    if (s.kind != StmtKind::Assign) return std::nullopt;  // no stores, no inner loops
    if (s.target == r.acc) {
      if (!fold_operand(s, r.acc)) return std::nullopt;
      r.op = s.value->op;
      ++folds;
    } else if (mentions_local(s.value, r.acc)) {
      return std::nullopt;
    }
  }
  if (folds != 1) return std::nullopt;
  return r;
}

}  // namespace

int split_reductions(Program& p) {
  int split = 0;
  for (size_t ki = 0; ki < p.kernels.size(); ++ki) {
    Kernel& k = p.kernels[ki];
    auto red = match(k);
    if (!red) continue;
    const Scalar t = k.locals.at(static_cast<size_t>(red->acc)).type;
    const int64_t chunks = (red->n + kSplitReductionChunk - 1) / kSplitReductionChunk;

    Buffer partials;
    partials.name = k.node + "/partials";
    partials.dtype = t == Scalar::f32 ? DType::f32 : t == Scalar::f64 ? DType::f64 : t == Scalar::i32 ? DType::i32 : DType::i64;
    partials.shape = {chunks};
    partials.storage = Storage::Arena;
    partials.offset = -1;
    p.buffers.push_back(partials);
    const int pb = static_cast<int>(p.buffers.size() - 1);
    for (Entry& e : p.entries)
      if (std::find(e.kernels.begin(), e.kernels.end(), static_cast<int>(ki)) != e.kernels.end())
        e.arena_buffers.push_back(pb);

    Stmt init = k.body[0], loop = k.body[1], store = k.body[2];
    const int c = static_cast<int>(k.var_names.size());
    k.var_names.push_back("chunk");
    const int c2 = static_cast<int>(k.var_names.size());
    k.var_names.push_back("chunk");
    ExprP cv = var(c), lo = binary(Op::Mul, cv, c_int(kSplitReductionChunk));
    loop.lo = lo;
    loop.hi = binary(Op::Min, c_int(red->n), binary(Op::Add, lo, c_int(kSplitReductionChunk)));
    // parallel for chunk: acc = init; fold the chunk; partials[chunk] = acc
    Stmt per_chunk = loop_stmt(c, c_int(0), c_int(chunks),
                               {init, loop, store_stmt(pb, cv, local(red->acc, t))}, /*parallel=*/true);
    // then, on one thread and in chunk order: acc = init; acc = acc op partials[chunk]; out = acc
    ExprP acc = local(red->acc, t);
    Stmt fold = loop_stmt(c2, c_int(0), c_int(chunks),
                          {assign_stmt(red->acc, binary(red->op, acc, load(pb, t, var(c2))))});
    k.body = {per_chunk, init, fold, store};
    k.comment += k.comment.empty() ? "" : "; ";
    k.comment += "split into " + std::to_string(chunks) + " chunks of " + std::to_string(kSplitReductionChunk) +
                 ", folded in order";
    ++split;
  }
  return split;
}

}  // namespace kiln::lower
