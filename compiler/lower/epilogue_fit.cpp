#include "compiler/lower/epilogue_fit.h"

#include <algorithm>
#include <functional>
#include <optional>

#include "compiler/lower/gemm_epilogue.h"
#include "compiler/lower/memory_plan.h"

namespace kiln::lower {

namespace {

void walk_loads(const ExprP& e, const std::function<void(const Expr&)>& f) {
  if (!e) return;
  if (e->kind == ExprKind::Load) f(*e);
  for (const ExprP& a : e->args) walk_loads(a, f);
}

}  // namespace

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

bool reads_only_at(const std::vector<Stmt>& body, int buffer, const ExprP& at) {
  for (const Stmt& s : body) {
    for (const ExprP& e : {s.lo, s.hi, s.index, s.value})
      if (at ? !loads_only_at(e, buffer, at) : mentions_load(e, buffer)) return false;
    if (!reads_only_at(s.body, buffer, at)) return false;
  }
  return true;
}

ConsumerSearch::ConsumerSearch(const Program& p) {
  for (const Entry& e : p.entries) used_.insert(e.kernels.begin(), e.kernels.end());
  for (int ki : used_)
    for (int b : kernel_buffers(p, p.kernels[static_cast<size_t>(ki)])) touched_by_[b].insert(ki);
  for (const Entry& e : p.entries)
    for (const Entry::Update& u : e.updates) tail_.insert(u.kernel);  // end-of-step copies stay where they are
}

int ConsumerSearch::sole_consumer(const Program& p, int producer, int c, int64_t cols, std::string& why) const {
  why.clear();
  std::set<int> others;
  if (auto it = touched_by_.find(c); it != touched_by_.end()) others = it->second;
  others.erase(producer);
  if (others.size() != 1) {
    why = others.empty() ? "nothing reads its product" : "its product has several readers";
    return -1;
  }
  const int ui = *others.begin();
  const Kernel& u = p.kernels[static_cast<size_t>(ui)];
  if (tail_.count(ui)) {
    why = "its reader is an end-of-step update copy";
    return -1;
  }
  if (std::string misfit = epilogue_misfit(p, u, c, cols); !misfit.empty()) {
    why = misfit + " (" + u.name + ")";
    return -1;
  }
  std::set<int> uw;
  const std::set<int> ua = kernel_buffers(p, u, &uw);
  std::set<int> producer_reads = kernel_buffers(p, p.kernels[static_cast<size_t>(producer)]);
  producer_reads.erase(c);
  for (int b : uw)
    if (producer_reads.count(b)) {
      why = u.name + " overwrites an operand of the producer";
      return -1;
    }
  // Running u's work at the producer's place must not change what the kernels between see.
  for (const Entry& e : p.entries) {
    auto pg = std::find(e.kernels.begin(), e.kernels.end(), producer);
    auto pu = std::find(e.kernels.begin(), e.kernels.end(), ui);
    bool movable = (pg == e.kernels.end()) == (pu == e.kernels.end()) && pu >= pg;
    if (movable && pg != e.kernels.end())
      for (auto it = pg + 1; it != pu && movable; ++it) {
        std::set<int> xw;
        const std::set<int> xa = kernel_buffers(p, p.kernels[static_cast<size_t>(*it)], &xw);
        for (int b : uw) movable = movable && !xa.count(b);
        for (int b : ua) movable = movable && !xw.count(b);
      }
    if (!movable) {
      why = "a kernel between it and " + u.name + " depends on the order";
      return -1;
    }
  }
  return ui;
}

void drop_from_entries(Program& p, int k) {
  for (Entry& e : p.entries) e.kernels.erase(std::remove(e.kernels.begin(), e.kernels.end(), k), e.kernels.end());
}

}  // namespace kiln::lower
