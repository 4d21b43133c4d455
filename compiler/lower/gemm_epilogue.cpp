#include "compiler/lower/gemm_epilogue.h"

#include <algorithm>

#include "compiler/lower/epilogue_fit.h"
#include "compiler/lower/gemm_blocking.h"

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

// Whether the product may reach C at all: a packed product no deeper than
// one depth block goes to a block on the stack, the epilogue reads it there
// and C is never written (gemm_driver.cpp).
bool product_reaches_c(const Program& p, const GemmSpec& g) {
  if (!gemm_packed(p.buffers.at(static_cast<size_t>(g.c)).dtype) || !is_const(g.k)) return true;
  return g.k->ival > (g.windows ? kGemmWindowsKC : kGemmMatrixMaxKC);
}

// The buffer an epilogue (`loop`, about to join gemm g) may write the
// product into: its only store, of C's type and size, which it never reads,
// and neither it nor C a view or viewed. sole_consumer has already made the
// store the product's element's (so each element's product is read before
// its result overwrites it) and kept it off every buffer the gemm touches.
// Only where the product reaches C: elsewhere C costs nothing, and an output
// the gemm also reads loses its streaming stores (emit_kernel.cpp).
int in_place_output(const Program& p, const GemmSpec& g, const Stmt& loop) {
  if (!product_reaches_c(p, g)) return -1;
  const std::vector<Stmt>& body = element_loop(loop).body;
  const auto stores = std::count_if(body.begin(), body.end(), [](const Stmt& s) { return s.kind == StmtKind::Store; });
  if (stores != 1 || body.back().kind != StmtKind::Store) return -1;
  const int out = body.back().target;
  const Buffer &c = p.buffers.at(static_cast<size_t>(g.c)), &o = p.buffers.at(static_cast<size_t>(out));
  if (o.dtype != c.dtype || numel(o.shape, 1) != numel(c.shape, 1) || numel(o.shape, 2) != numel(c.shape, 2)) return -1;
  if (!reads_only_at(body, out, nullptr) || o.is_view() || c.is_view() || p.viewed(out) || p.viewed(g.c)) return -1;
  return out;
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
    const int in_place = in_place_output(p, g.gemm, loop);
    g.body = {loop};
    g.var_names = u.var_names;
    g.locals = u.locals;
    g.locals.push_back({"product", t});
    g.gemm.epilogue_value = value;
    g.writes = u.writes;
    // The epilogue's one output, at the product's own element and of its
    // type, takes a deep product in place: C, which accumulates it across
    // depth blocks, is not a second buffer the size of the output.
    if (in_place >= 0) {
      g.gemm.c = in_place;
      say("the product lands in " + p.buffers.at(static_cast<size_t>(in_place)).name + ", which the epilogue overwrites");
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
