#include "compiler/lower/gemm_epilogue.h"

#include "compiler/lower/epilogue_fit.h"

namespace kiln::lower {

namespace {

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

// The buffer an epilogue may write the product into: its only store, at
// the product's element (so each element's product is read before its
// result overwrites it), of C's type, with C's size, neither operand, and
// neither it nor C a view or viewed.
int in_place_output(const Program& p, const Stmt& loop, const GemmSpec& g) {
  const Stmt& elements = element_loop(loop);
  if (elements.body.empty()) return -1;
  const Stmt& last = elements.body.back();
  int stores = 0;
  for (const Stmt& s : elements.body) stores += s.kind == StmtKind::Store;
  if (stores != 1 || last.kind != StmtKind::Store) return -1;
  for (const Stmt& s : elements.body)
    if (s.kind == StmtKind::Loop) return -1;
  const Buffer &c = p.buffers.at(static_cast<size_t>(g.c)), &o = p.buffers.at(static_cast<size_t>(last.target));
  if (last.target == g.a || last.target == g.b || o.dtype != c.dtype || o.is_view() || c.is_view() ||
      numel(o.shape, 1) != numel(c.shape, 1) || numel(o.shape, 2) != numel(c.shape, 2))
    return -1;
  if (!same_expr(last.index, epilogue_element(loop, g.ldc))) return -1;
  for (const Stmt& s : elements.body)
    if (mentions_load(s.value, last.target) || (s.index && mentions_load(s.index, last.target))) return -1;
  for (const Buffer& b : p.buffers)  // (nobody reads either through another name)
    if (b.is_view() && (b.view_of == g.c || b.view_of == last.target)) return -1;
  return last.target;
}

}  // namespace

int fuse_gemm_epilogues(Program& p, std::vector<std::string>* why) {
  const ConsumerSearch search(p);
  int fused = 0;
  for (int gi : search.used()) {
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
    std::string not_fit;
    const int ui = search.sole_consumer(p, gi, c, g.gemm.ldc, not_fit);
    if (ui < 0) {
      say("no epilogue: " + not_fit);
      continue;
    }
    const Kernel& u = p.kernels[static_cast<size_t>(ui)];
    Stmt loop = u.body[0];
    const int value = static_cast<int>(u.locals.size());
    for (Stmt& s : element_loop(loop).body) s.value = product_as_local(p, s.value, c, value, t);
    g.body = {loop};
    g.var_names = u.var_names;
    g.locals = u.locals;
    g.locals.push_back({"product", t});
    g.gemm.epilogue_value = value;
    g.writes = u.writes;
    // The epilogue's one output, at the product's own element and of its
    // type, takes the product in place: C is not a second buffer the size of
    // the output, written beside it (MobileNetV2's first expansion: 4.8 MB
    // more to write back from the caches at batch 1).
    if (const int out = in_place_output(p, g.body[0], g.gemm); out >= 0) {
      g.gemm.c = out;
      say("the product lands in " + p.buffers.at(static_cast<size_t>(out)).name + ", which the epilogue overwrites");
    }
    g.comment += "; epilogue per block: " + (u.comment.empty() ? u.node : u.comment);
    say("epilogue: " + u.name + " (node " + u.node + ") runs on each block of the product");
    g.node = u.node;
    g.origin = u.origin;
    drop_from_entries(p, ui);
    ++fused;
  }
  return fused;
}

}  // namespace kiln::lower
