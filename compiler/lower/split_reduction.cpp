#include "compiler/lower/split_reduction.h"

#include <algorithm>
#include <functional>

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

// A column reduction (per channel over every position: batch norm's
// statistics and their gradients) this pass can split:
//   for o in [0, C): out[o] = <constant>
//   for r in [0, R): for i in [0, C): { temps...; out[i] = out[i] op x }
// R may depend on the batch size.
struct ColumnReduction {
  int out = -1;
  Op op = Op::Add;
  int64_t cols = 0;
  ExprP init;
};

std::optional<ColumnReduction> match_columns(const Kernel& k, int64_t max_batch) {
  if (k.kind != KernelKind::Loops || k.body.size() != 2) return std::nullopt;
  const Stmt &init = k.body[0], &rows = k.body[1];
  auto from_zero = [](const Stmt& l) {
    return l.kind == StmtKind::Loop && !l.parallel && is_const(l.lo) && l.lo->ival == 0;
  };
  if (!from_zero(init) || !is_const(init.hi) || init.body.size() != 1) return std::nullopt;
  const Stmt& set = init.body[0];
  if (set.kind != StmtKind::Store || !is_const(set.value) || set.index->kind != ExprKind::Var || set.index->id != init.var)
    return std::nullopt;
  ColumnReduction c{set.target, Op::Add, init.hi->ival, set.value};
  if (!from_zero(rows) || rows.body.size() != 1 || !from_zero(rows.body[0])) return std::nullopt;
  const Stmt& cols = rows.body[0];
  if (!is_const(cols.hi) || cols.hi->ival != c.cols) return std::nullopt;
  auto rows_at_max = eval_size(rows.hi, max_batch);
  if (!rows_at_max || *rows_at_max * c.cols < kSplitReductionMin) return std::nullopt;
  int folds = 0;
  const ExprP at = var(cols.var);
  for (const Stmt& s : cols.body) {
    if (s.kind == StmtKind::Loop) return std::nullopt;
    if (s.kind == StmtKind::Assign) continue;  // a temporary of the element
    const ExprP& v = s.value;
    if (s.target != c.out || !same_expr(s.index, at) || v->kind != ExprKind::Binary ||
        (v->op != Op::Add && v->op != Op::Max && v->op != Op::Min))
      return std::nullopt;
    const bool left = v->args[0]->kind == ExprKind::Load && v->args[0]->id == c.out && same_expr(v->args[0]->args[0], at);
    if (!left) return std::nullopt;
    c.op = v->op;
    ++folds;
  }
  // out is read only as the fold's accumulator.
  int reads = 0;
  std::function<void(const ExprP&)> count = [&](const ExprP& e) {
    if (e->kind == ExprKind::Load && e->id == c.out) ++reads;
    for (const ExprP& a : e->args) count(a);
  };
  for (const Stmt& s : cols.body) count(s.value);
  if (folds != 1 || reads != 1) return std::nullopt;
  return c;
}

// e with every load of buffer `from` at index i reading buffer `to` at offset + i.
ExprP redirect(const ExprP& e, int from, int to, const ExprP& offset) {
  if (e->args.empty()) return e;
  auto copy = std::make_shared<Expr>(*e);
  for (ExprP& a : copy->args) a = redirect(a, from, to, offset);
  if (e->kind == ExprKind::Load && e->id == from) {
    copy->id = to;
    copy->args[0] = binary(Op::Add, offset, copy->args[0]);
  }
  return copy;
}

int add_partials(Program& p, size_t kernel, const std::string& name, DType dtype, int64_t elements) {
  Buffer partials;
  partials.name = name;
  partials.dtype = dtype;
  partials.shape = {elements};
  partials.storage = Storage::Arena;
  partials.offset = -1;
  p.buffers.push_back(partials);
  const int pb = static_cast<int>(p.buffers.size() - 1);
  for (Entry& e : p.entries)
    if (std::find(e.kernels.begin(), e.kernels.end(), static_cast<int>(kernel)) != e.kernels.end())
      e.arena_buffers.push_back(pb);
  return pb;
}

// Rows cut into chunks of about kSplitReductionChunk elements (their count
// depends on R alone), each folded into its own row of partials in a
// parallel loop; then the partials folded into out in chunk order.
void split_columns(Program& p, size_t ki, const ColumnReduction& c) {
  Kernel& k = p.kernels[ki];
  const Buffer& ob = p.buffers.at(static_cast<size_t>(c.out));
  const Scalar t = scalar_of(ob.dtype);
  const int64_t rows_per_chunk = std::max<int64_t>(1, kSplitReductionChunk / c.cols);
  Stmt init = k.body[0], rows = k.body[1];
  const ExprP R = rows.hi;
  const ExprP chunks = binary(Op::Div, binary(Op::Add, R, c_int(rows_per_chunk - 1)), c_int(rows_per_chunk));
  const int64_t max_chunks = (*eval_size(R, p.max_batch) + rows_per_chunk - 1) / rows_per_chunk;
  const int pb = add_partials(p, ki, k.node + "/partials", ob.dtype, max_chunks * c.cols);
  auto fresh = [&](const char* name) {
    k.var_names.push_back(name);
    return static_cast<int>(k.var_names.size() - 1);
  };
  const int chunk = fresh("chunk"), col = fresh("i"), chunk2 = fresh("chunk"), col2 = fresh("i");
  const ExprP row0 = binary(Op::Mul, var(chunk), c_int(rows_per_chunk));
  const ExprP base = binary(Op::Mul, var(chunk), c_int(c.cols));
  // The chunk's rows, into its partials.
  Stmt& cols = rows.body[0];
  for (Stmt& s : cols.body) {
    s.value = redirect(s.value, c.out, pb, base);
    if (s.kind == StmtKind::Store) {
      s.target = pb;
      s.index = binary(Op::Add, base, s.index);
    }
  }
  rows.lo = row0;
  rows.hi = binary(Op::Min, R, binary(Op::Add, row0, c_int(rows_per_chunk)));
  Stmt zero = loop_stmt(col, c_int(0), c_int(c.cols), {store_stmt(pb, binary(Op::Add, base, var(col)), c.init)});
  Stmt per_chunk = loop_stmt(chunk, c_int(0), chunks, {zero, rows}, /*parallel=*/true);
  // Then the partials into out, in chunk order.
  ExprP at = binary(Op::Add, binary(Op::Mul, var(chunk2), c_int(c.cols)), var(col2));
  Stmt fold = loop_stmt(chunk2, c_int(0), chunks,
                        {loop_stmt(col2, c_int(0), c_int(c.cols),
                                   {store_stmt(c.out, var(col2),
                                               binary(c.op, load(c.out, t, var(col2)), load(pb, t, at)))})});
  k.body = {per_chunk, init, fold};
  k.comment += k.comment.empty() ? "" : "; ";
  k.comment += "rows split into chunks of " + std::to_string(rows_per_chunk) + ", folded in order";
}

}  // namespace

int split_reductions(Program& p) {
  int split = 0;
  for (size_t ki = 0; ki < p.kernels.size(); ++ki) {
    Kernel& k = p.kernels[ki];
    if (auto columns = match_columns(k, p.max_batch)) {
      split_columns(p, ki, *columns);
      ++split;
      continue;
    }
    auto red = match(k);
    if (!red) continue;
    const Scalar t = k.locals.at(static_cast<size_t>(red->acc)).type;
    const int64_t chunks = (red->n + kSplitReductionChunk - 1) / kSplitReductionChunk;

    const DType dt = t == Scalar::f32 ? DType::f32 : t == Scalar::f64 ? DType::f64 : t == Scalar::i32 ? DType::i32 : DType::i64;
    const int pb = add_partials(p, ki, k.node + "/partials", dt, chunks);

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
