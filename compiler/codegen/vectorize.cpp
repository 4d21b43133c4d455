// Which innermost loops kiln vectorizes itself: every access contiguous
// (stride 1) or invariant along the loop, stores contiguous, a buffer that is
// stored only read at the very element being stored, and locals either
// lane-private temporaries or reductions (acc = acc + x, max, min). A buffer
// stored at several indices takes them a constant distance apart, at least
// the loop's trip count: the loop writes disjoint ranges, in any order (a
// Winograd tile's 36 transformed values, 64 channels apart).
#include <algorithm>
#include <cstdlib>
#include <functional>

#include "compiler/codegen/emitter.h"

namespace kiln::codegen {

using namespace kiln::lower;

std::optional<int64_t> stride_along(const ExprP& e, int v, const std::set<int>& variant) {
  auto all_invariant = [&]() -> std::optional<int64_t> {
    for (auto& a : e->args) {
      auto s = stride_along(a, v, variant);
      if (!s || *s != 0) return std::nullopt;
    }
    return 0;
  };
  switch (e->kind) {
    case ExprKind::Const:
    case ExprKind::Batch: return 0;
    case ExprKind::Var: return e->id == v ? 1 : 0;
    case ExprKind::Local: return variant.count(e->id) ? std::nullopt : std::optional<int64_t>(0);
    case ExprKind::Load: return all_invariant();
    case ExprKind::Binary: {
      auto a = stride_along(e->args[0], v, variant), b = stride_along(e->args[1], v, variant);
      if (!a || !b) return std::nullopt;
      if (*a == 0 && *b == 0) return 0;
      if (e->op == Op::Add) return *a + *b;
      if (e->op == Op::Sub) return *a - *b;
      if (e->op == Op::Mul) {
        if (*b == 0 && is_const(e->args[1])) return *a * e->args[1]->ival;
        if (*a == 0 && is_const(e->args[0])) return *b * e->args[0]->ival;
      }
      return std::nullopt;
    }
    default: return all_invariant();
  }
}

// An index as the terms added up in it: the integer constants summed, the others in order.
static void additive_terms(const ExprP& e, std::vector<ExprP>& terms, int64_t& constant) {
  if (e->kind == ExprKind::Binary && e->op == Op::Add) {
    additive_terms(e->args[0], terms, constant);
    additive_terms(e->args[1], terms, constant);
  } else if (e->kind == ExprKind::Const && e->type == Scalar::i64) {
    constant += e->ival;
  } else {
    terms.push_back(e);
  }
}

// b - a, when the two indices differ by a constant alone.
static std::optional<int64_t> constant_distance(const ExprP& a, const ExprP& b) {
  std::vector<ExprP> ta, tb;
  int64_t ca = 0, cb = 0;
  additive_terms(a, ta, ca);
  additive_terms(b, tb, cb);
  if (ta.size() != tb.size()) return std::nullopt;
  for (size_t i = 0; i < ta.size(); ++i)
    if (!same_expr(ta[i], tb[i])) return std::nullopt;
  return cb - ca;
}

static void collect_loads(const ExprP& e, std::vector<const Expr*>& out) {
  if (e->kind == ExprKind::Load) out.push_back(e.get());
  for (auto& a : e->args) collect_loads(a, out);
}

std::optional<VectorPlan> plan_vector_loop(const Stmt& loop) {
  const int v = loop.var;
  VectorPlan plan;
  std::set<int> variant;
  for (const Stmt& s : loop.body) {
    if (s.kind == StmtKind::Loop) return std::nullopt;
    if (s.kind == StmtKind::Assign) variant.insert(s.target);
  }
  // Classify locals: a reduction is `l = op(l, e)` (its only mention in the
  // loop); a temporary is assigned once before every read of it.
  for (int l : variant) {
    int assigns = 0;
    bool read_before_assign = false, assigned = false, reduction = false;
    Op op = Op::Add;
    int mentions = 0;
    for (const Stmt& s : loop.body) {
      if (s.index && mentions_local(s.index, l)) return std::nullopt;
      if (mentions_local(s.value, l)) {
        ++mentions;
        if (!assigned) read_before_assign = true;
      }
      if (s.kind == StmtKind::Assign && s.target == l) {
        ++assigns;
        assigned = true;
        const ExprP& val = s.value;
        if (val->kind == ExprKind::Binary && (val->op == Op::Add || val->op == Op::Max || val->op == Op::Min)) {
          const ExprP &x = val->args[0], &y = val->args[1];
          bool left = x->kind == ExprKind::Local && x->id == l && !mentions_local(y, l);
          bool right = y->kind == ExprKind::Local && y->id == l && !mentions_local(x, l);
          if (left || right) reduction = true, op = val->op;
        }
      }
    }
    if (assigns != 1) return std::nullopt;
    if (reduction && mentions == 1) {
      plan.locals[l] = VectorPlan::LocalRole::Reduction;
      plan.reduce_op[l] = op;
    } else if (!read_before_assign) {
      plan.locals[l] = VectorPlan::LocalRole::Temp;
    } else {
      return std::nullopt;
    }
  }
  // A reduction's operand may not read another reduction (it has no lane-wise value).
  for (auto& [l, role] : plan.locals) {
    if (role != VectorPlan::LocalRole::Reduction) continue;
    for (const Stmt& s : loop.body)
      for (auto& [r, role2] : plan.locals)
        if (role2 == VectorPlan::LocalRole::Reduction && r != l && s.kind == StmtKind::Assign && s.target != r &&
            mentions_local(s.value, r))
          return std::nullopt;
  }
  // Accesses: stores contiguous; loads contiguous or invariant; a stored
  // buffer read only at the stored element.
  const std::optional<int64_t> trips =
      is_const(loop.lo) && is_const(loop.hi) ? std::optional<int64_t>(loop.hi->ival - loop.lo->ival) : std::nullopt;
  std::map<int, std::vector<ExprP>> stored;  // buffer -> the indices stored at
  for (const Stmt& s : loop.body) {
    if (s.kind != StmtKind::Store) continue;
    if (stride_along(s.index, v, variant) != 1) return std::nullopt;
    std::vector<ExprP>& at = stored[s.target];
    if (std::any_of(at.begin(), at.end(), [&](const ExprP& i) { return same_expr(i, s.index); })) continue;
    for (const ExprP& i : at) {
      auto d = constant_distance(i, s.index);
      if (!d || !trips || std::abs(*d) < *trips) return std::nullopt;
    }
    at.push_back(s.index);
  }
  for (const Stmt& s : loop.body) {
    std::vector<const Expr*> loads;
    collect_loads(s.value, loads);
    for (const Expr* ld : loads) {
      auto st = stride_along(ld->args[0], v, variant);
      if (!st || (*st != 0 && *st != 1)) return std::nullopt;
      auto it = stored.find(ld->id);
      if (it != stored.end() && std::none_of(it->second.begin(), it->second.end(),
                                             [&](const ExprP& i) { return same_expr(i, ld->args[0]); }))
        return std::nullopt;
    }
  }
  return plan;
}

}  // namespace kiln::codegen
