#include "compiler/lower/row_epilogue.h"

#include <algorithm>
#include <functional>
#include <stdexcept>

#include "compiler/lower/epilogue_fit.h"
#include "compiler/lower/gemm_epilogue.h"
#include "compiler/lower/memory_plan.h"

namespace kiln::lower {

namespace {

// The consumer's statements in the producer's numbering: loop variable v
// reads as var_as(v), local l as local l + local_base.
struct Renumber {
  std::function<ExprP(int)> var_as;
  int var_base = 0, local_base = 0;

  ExprP operator()(const ExprP& e) const {
    if (e->kind == ExprKind::Var) return var_as(e->id);
    if (e->kind == ExprKind::Local) return local(e->id + local_base, e->type);
    if (e->args.empty()) return e;
    auto copy = std::make_shared<Expr>(*e);
    for (ExprP& a : copy->args) a = (*this)(a);
    return copy;
  }
  Stmt operator()(const Stmt& s) const {
    Stmt out = s;
    switch (s.kind) {
      case StmtKind::Loop:
        out.var = s.var + var_base;
        out.lo = (*this)(s.lo);
        out.hi = (*this)(s.hi);
        out.parallel = false;  // inside the producer's loops now
        for (Stmt& b : out.body) b = (*this)(b);
        break;
      case StmtKind::Store:
        out.index = (*this)(s.index);
        out.value = (*this)(s.value);
        break;
      case StmtKind::Assign:
        out.target = s.target + local_base;
        out.value = (*this)(s.value);
        break;
    }
    return out;
  }
};

Stmt* find_loop(std::vector<Stmt>& body, int v) {
  for (Stmt& s : body) {
    if (s.kind != StmtKind::Loop) continue;
    if (s.var == v) return &s;
    if (Stmt* inner = find_loop(s.body, v)) return inner;
  }
  return nullptr;
}

// Puts consumer u's loop into producer k at its row site.
void graft(Kernel& k, const Kernel& u) {
  const Kernel::RowSite& site = *k.row_site;
  const Stmt& outer = u.body[0];
  const int var_base = static_cast<int>(k.var_names.size());
  const int local_base = static_cast<int>(k.locals.size());
  Stmt rows;
  if (is_rows_by_columns(outer)) {
    // The nest's row is the site's; its column loop runs as it is.
    Renumber r{[&](int v) { return v == outer.var ? site.row : var(v + var_base); }, var_base, local_base};
    rows = r(outer.body[0]);
  } else {
    // The flat loop's element is the row's column j: a new variable.
    const int column = var_base + static_cast<int>(u.var_names.size());
    ExprP element = binary(Op::Add, binary(Op::Mul, site.row, c_int(site.cols)), var(column));
    Renumber r{[&](int v) { return v == outer.var ? element : var(v + var_base); }, var_base, local_base};
    std::vector<Stmt> body;
    for (const Stmt& s : outer.body) body.push_back(r(s));
    rows = loop_stmt(column, c_int(0), c_int(site.cols), std::move(body));
  }
  k.var_names.insert(k.var_names.end(), u.var_names.begin(), u.var_names.end());
  if (!is_rows_by_columns(outer)) k.var_names.push_back("column");
  k.locals.insert(k.locals.end(), u.locals.begin(), u.locals.end());
  Stmt* at = find_loop(k.body, site.loop_var);
  if (!at || site.at > at->body.size()) throw std::logic_error("kernel " + k.name + ": its row site is not in its loops");
  at->body.insert(at->body.begin() + static_cast<std::ptrdiff_t>(site.at), std::move(rows));
  for (int w : u.writes)
    if (std::find(k.writes.begin(), k.writes.end(), w) == k.writes.end()) k.writes.push_back(w);
  k.comment += "; epilogue per row: " + (u.comment.empty() ? u.node : u.comment);
  k.node = u.node;
  k.origin = u.origin;
}

void collect_stores(const std::vector<Stmt>& body, std::vector<const Stmt*>& stores) {
  for (const Stmt& s : body) {
    if (s.kind == StmtKind::Store) stores.push_back(&s);
    collect_stores(s.body, stores);
  }
}

// The buffer consumer u finishes producer k's output c into, element for
// element, if k may write its sums there instead of into c: u stores one
// buffer z of c's type, every store at one index, and reads c only at that
// index and z never; k does not touch z; neither is a view or has views.
// Then u reads each element of z just before it overwrites it, and c, read
// by nobody else, takes no memory: a depthwise convolution no longer writes
// its whole output (38 MB at MobileNetV2's batch 32) only for the clip after
// it to read back a row and write another copy.
int finished_in_place(const Program& p, const Kernel& k, const Kernel& u, int c) {
  std::vector<const Stmt*> stores;
  collect_stores(u.body, stores);
  if (stores.empty()) return -1;
  const int z = stores[0]->target;
  const ExprP at = stores[0]->index;
  for (const Stmt* s : stores)
    if (s->target != z || !same_expr(s->index, at)) return -1;
  if (z == c || !reads_only_at(u.body, c, at) || !reads_only_at(u.body, z, nullptr)) return -1;
  if (kernel_buffers(p, k).count(z)) return -1;
  const Buffer &bc = p.buffers.at(static_cast<size_t>(c)), &bz = p.buffers.at(static_cast<size_t>(z));
  if (bz.storage != Storage::Arena || bc.is_view() || bz.is_view() || bc.dtype != bz.dtype || bc.shape != bz.shape)
    return -1;
  if (p.viewed(c) || p.viewed(z)) return -1;
  return z;
}

}  // namespace

int fuse_row_epilogues(Program& p, std::vector<std::string>* why) {
  const ConsumerSearch search(p);
  int fused = 0;
  for (int ki : search.used()) {
    Kernel& k = p.kernels[static_cast<size_t>(ki)];
    if (k.kind != KernelKind::Loops || !k.row_site) continue;
    const int c = k.row_site->buffer;
    const Buffer& cb = p.buffers.at(static_cast<size_t>(c));
    if (cb.storage != Storage::Arena) continue;
    std::string not_fit;
    const int ui = search.sole_consumer(p, ki, c, k.row_site->cols, not_fit);
    if (ui < 0) {
      if (why) why->push_back(p.name + ": " + k.name + ": no row epilogue: " + not_fit);
      continue;
    }
    const Kernel& u = p.kernels[static_cast<size_t>(ui)];
    if (why) why->push_back(p.name + ": " + k.name + ": row epilogue: " + u.name + " (node " + u.node + ") runs on each finished row");
    const int z = finished_in_place(p, k, u, c);
    graft(k, u);
    if (z >= 0) {
      k.writes.erase(std::remove(k.writes.begin(), k.writes.end(), c), k.writes.end());  // (z is there)
      rename_buffer(k, c, z);
      if (why) why->push_back(p.name + ": " + k.name + ": its sums go straight into " + p.buffers[static_cast<size_t>(z)].name + ", finished there in place");
    }
    drop_from_entries(p, ui);
    ++fused;
  }
  // The sites say nothing once the kernels are final.
  for (Kernel& k : p.kernels) k.row_site.reset();
  return fused;
}

}  // namespace kiln::lower
