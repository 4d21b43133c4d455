#include "compiler/lower/gemm_epilogue.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "compiler/lower/memory_plan.h"

namespace kiln::lower {

namespace {

void walk_loads(const ExprP& e, const std::function<void(const Expr&)>& f) {
  if (!e) return;
  if (e->kind == ExprKind::Load) f(*e);
  for (const ExprP& a : e->args) walk_loads(a, f);
}

// Integer value of a size expression at a batch size (constants, the batch, + - * /).
std::optional<int64_t> eval_size(const ExprP& e, int64_t batch) {
  if (e->kind == ExprKind::Const) return e->ival;
  if (e->kind == ExprKind::Batch) return batch;
  if (e->kind != ExprKind::Binary) return std::nullopt;
  auto a = eval_size(e->args[0], batch), b = eval_size(e->args[1], batch);
  if (!a || !b) return std::nullopt;
  switch (e->op) {
    case Op::Add: return *a + *b;
    case Op::Sub: return *a - *b;
    case Op::Mul: return *a * *b;
    case Op::Div: return *b ? std::optional<int64_t>(*a / *b) : std::nullopt;
    default: return std::nullopt;
  }
}

// Buffer `id` is c itself or a view of all of c (a reshape): element i of one is element i of the other.
bool whole_product(const Program& p, int id, int c) {
  if (id == c) return true;
  const Buffer& b = p.buffers.at(static_cast<size_t>(id));
  const Buffer& cb = p.buffers.at(static_cast<size_t>(c));
  return b.view_of == c && b.view_offset == 0 && numel(b.shape, 1) == numel(cb.shape, 1) &&
         numel(b.shape, 2) == numel(cb.shape, 2);
}

// Why `u` cannot be the epilogue of a gemm writing `c`, `cols` columns wide
// (empty: it can). The consumer is one flat loop over the product's elements,
// or a rows x columns nest (the elementwise lowering's form for a per-column
// operand such as a bias), which may also read at the column alone.
std::string epilogue_misfit(const Program& p, const Kernel& u, int c, int64_t cols) {
  if (u.kind != KernelKind::Loops || u.body.size() != 1 || u.body[0].kind != StmtKind::Loop)
    return "its consumer is not one loop";
  const Stmt& outer = u.body[0];
  const bool nest = is_rows_by_columns(outer);
  const Stmt& loop = element_loop(outer);
  if (!is_const(outer.lo) || outer.lo->ival != 0 || !is_const(loop.lo) || loop.lo->ival != 0)
    return "its consumer's loop does not start at 0";
  if (nest && !(is_const(loop.hi) && loop.hi->ival == cols)) return "its consumer's inner loop is not the product's columns";
  for (const Stmt& s : loop.body)
    if (s.kind == StmtKind::Loop) return "its consumer is a deeper loop nest";
  const int64_t per_trip = nest ? cols : 1;
  const Buffer& cb = p.buffers.at(static_cast<size_t>(c));
  for (int64_t batch : {int64_t{1}, p.max_batch}) {
    auto trips = eval_size(outer.hi, batch);
    if (!trips || *trips * per_trip * static_cast<int64_t>(dtype_size(cb.dtype)) != cb.bytes(batch))
      return "its consumer does not cover the product";
  }
  // What the statements may index by: the element, and in a nest its column.
  const ExprP element = epilogue_element(outer, cols);
  const ExprP column = nest ? var(loop.var) : nullptr;
  auto mentions_loops = [&](const ExprP& e) { return mentions_var(e, loop.var) || (nest && mentions_var(e, outer.var)); };
  std::set<int> assigned;
  for (const Stmt& s : loop.body) {
    for (int l : assigned)
      if (s.kind == StmtKind::Assign && s.target == l) return "its consumer assigns a local twice";
    // A local read before its assignment carries a value between elements.
    for (size_t l = 0; l < u.locals.size(); ++l)
      if (mentions_local(s.value, static_cast<int>(l)) && !assigned.count(static_cast<int>(l)))
        return "its consumer carries a local across elements";
    if (s.kind == StmtKind::Assign) assigned.insert(s.target);
    if (s.kind == StmtKind::Store && (s.target == c || !same_expr(s.index, element)))
      return "its consumer stores other than at its own element";
    std::string bad;
    walk_loads(s.value, [&](const Expr& l) {
      const ExprP& at = l.args[0];
      const bool product = whole_product(p, l.id, c);
      if (!product && p.buffers.at(static_cast<size_t>(l.id)).view_of == c) bad = "its consumer reads part of the product";
      else if (same_expr(at, element)) return;
      else if (!product && column && same_expr(at, column)) {
        // Another row's element may already be stored there: the order would show.
        if (std::find(u.writes.begin(), u.writes.end(), l.id) != u.writes.end()) bad = "its consumer reads at the column a buffer it writes";
        return;
      }
      else if (product || mentions_loops(at)) bad = "its consumer reads a neighbouring element";
    });
    if (!bad.empty()) return bad;
  }
  return "";
}

ExprP product_as_local(const Program& p, const ExprP& e, int c, int value, Scalar t) {
  if (e->kind == ExprKind::Load && whole_product(p, e->id, c)) return local(value, t);
  bool changed = false;
  std::vector<ExprP> args;
  for (const ExprP& a : e->args) {
    args.push_back(product_as_local(p, a, c, value, t));
    changed = changed || args.back() != a;
  }
  if (!changed) return e;
  auto copy = std::make_shared<Expr>(*e);
  copy->args = std::move(args);
  return copy;
}

}  // namespace

int fuse_gemm_epilogues(Program& p, std::vector<std::string>* why) {
  // Which kernels (of any entry) touch each buffer.
  std::set<int> used;
  for (const Entry& e : p.entries) used.insert(e.kernels.begin(), e.kernels.end());
  std::map<int, std::set<int>> touched_by;
  for (int ki : used)
    for (int b : kernel_buffers(p, p.kernels[static_cast<size_t>(ki)])) touched_by[b].insert(ki);
  std::set<int> tail;  // end-of-step update copies stay where they are
  for (const Entry& e : p.entries)
    for (const Entry::Update& u : e.updates) tail.insert(u.kernel);

  int fused = 0;
  for (int gi : used) {
    Kernel& g = p.kernels[static_cast<size_t>(gi)];
    if (g.kind != KernelKind::Gemm || g.gemm.packs_b || !g.body.empty() || g.gemm.accumulate || !g.locals.empty() ||
        !g.var_names.empty())
      continue;
    const int c = g.gemm.c;
    const Buffer& cb = p.buffers.at(static_cast<size_t>(c));
    // A batch's products must lie one after another in C (not interleaved,
    // as a grouped convolution's are): the epilogue walks C flat.
    if (g.gemm.batched() && !(is_const(g.gemm.m) && g.gemm.stride_c == g.gemm.m->ival * g.gemm.ldc)) {
      if (why) why->push_back(p.name + ": gemm " + g.name + ": no epilogue: its products interleave in C");
      continue;
    }
    if (cb.storage != Storage::Arena || !is_float(scalar_of(cb.dtype))) continue;
    const Scalar t = scalar_of(cb.dtype);
    auto say = [&](const std::string& s) {
      if (why) why->push_back(p.name + ": gemm " + g.name + ": " + s);
    };
    std::set<int> others = touched_by[c];
    others.erase(gi);
    if (others.size() != 1) {
      say(others.empty() ? "no epilogue: nothing reads its product" : "no epilogue: its product has several readers");
      continue;
    }
    const int ui = *others.begin();
    const Kernel& u = p.kernels[static_cast<size_t>(ui)];
    if (tail.count(ui)) continue;
    if (std::string misfit = epilogue_misfit(p, u, c, g.gemm.ldc); !misfit.empty()) {
      say("no epilogue: " + misfit + " (" + u.name + ")");
      continue;
    }
    std::set<int> uw;
    const std::set<int> ua = kernel_buffers(p, u, &uw);
    if (uw.count(g.gemm.a) || uw.count(g.gemm.b)) {
      say("no epilogue: " + u.name + " overwrites an operand of the product");
      continue;
    }
    // Running u's work at g's place must not change what the kernels between see.
    bool movable = true;
    for (const Entry& e : p.entries) {
      auto pg = std::find(e.kernels.begin(), e.kernels.end(), gi);
      auto pu = std::find(e.kernels.begin(), e.kernels.end(), ui);
      if ((pg == e.kernels.end()) != (pu == e.kernels.end()) || pu < pg) movable = false;
      if (!movable || pg == e.kernels.end()) continue;
      for (auto it = pg + 1; it != pu && movable; ++it) {
        std::set<int> xw;
        const std::set<int> xa = kernel_buffers(p, p.kernels[static_cast<size_t>(*it)], &xw);
        for (int b : uw) movable = movable && !xa.count(b);
        for (int b : ua) movable = movable && !xw.count(b);
      }
    }
    if (!movable) {
      say("no epilogue: a kernel between it and " + u.name + " depends on the order");
      continue;
    }

    Stmt loop = u.body[0];
    const int value = static_cast<int>(u.locals.size());
    for (Stmt& s : element_loop(loop).body) s.value = product_as_local(p, s.value, c, value, t);
    g.body = {loop};
    g.var_names = u.var_names;
    g.locals = u.locals;
    g.locals.push_back({"product", t});
    g.gemm.epilogue_value = value;
    g.writes = u.writes;
    g.comment += "; epilogue per block: " + (u.comment.empty() ? u.node : u.comment);
    say("epilogue: " + u.name + " (node " + u.node + ") runs on each block of the product");
    g.node = u.node;
    g.origin = u.origin;
    for (Entry& e : p.entries) e.kernels.erase(std::remove(e.kernels.begin(), e.kernels.end(), ui), e.kernels.end());
    ++fused;
  }
  return fused;
}

}  // namespace kiln::lower
