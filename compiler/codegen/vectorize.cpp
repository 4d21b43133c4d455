// Which innermost loops kiln vectorizes itself: every access contiguous
// (stride 1) or invariant along the loop, stores contiguous, a buffer that is
// stored only read at the very element being stored, and locals either
// lane-private temporaries or reductions (acc = acc + x, max, min).
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
  std::map<int, ExprP> stored;
  for (const Stmt& s : loop.body) {
    if (s.kind != StmtKind::Store) continue;
    if (stride_along(s.index, v, variant) != 1) return std::nullopt;
    auto it = stored.find(s.target);
    if (it != stored.end() && !same_expr(it->second, s.index)) return std::nullopt;
    stored[s.target] = s.index;
  }
  for (const Stmt& s : loop.body) {
    std::vector<const Expr*> loads;
    collect_loads(s.value, loads);
    for (const Expr* ld : loads) {
      auto st = stride_along(ld->args[0], v, variant);
      if (!st || (*st != 0 && *st != 1)) return std::nullopt;
      auto it = stored.find(ld->id);
      if (it != stored.end() && !same_expr(it->second, ld->args[0])) return std::nullopt;
    }
  }
  return plan;
}

}  // namespace kiln::codegen
