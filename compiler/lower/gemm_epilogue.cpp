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
