#include "compiler/lower/loop_verify.h"

#include <algorithm>
#include <set>
#include <stdexcept>

#include "compiler/lower/gemm_blocking.h"
#include "compiler/lower/gemm_epilogue.h"
#include "compiler/lower/memory_plan.h"
#include "compiler/lower/row_epilogue.h"
#include "compiler/lower/split_reduction.h"

namespace kiln::lower {

namespace {

struct KernelCheck {
  const Program& p;
  const Kernel& k;
  std::vector<std::string>& problems;
  std::vector<int> vars_in_scope;

  void fail(const std::string& what) { problems.push_back("kernel " + k.name + ": " + what); }

  bool buffer_ok(int id, const char* role) {
    if (id >= 0 && static_cast<size_t>(id) < p.buffers.size()) return true;
    fail(std::string(role) + " buffer " + std::to_string(id) + " does not exist");
    return false;
  }

  void expr(const ExprP& e) {
    if (!e) return fail("a missing expression");
    for (const ExprP& a : e->args) expr(a);
    switch (e->kind) {
      case ExprKind::Var:
        if (std::find(vars_in_scope.begin(), vars_in_scope.end(), e->id) == vars_in_scope.end())
          fail("loop variable " + std::to_string(e->id) + " is read outside its loop");
        break;
      case ExprKind::Local:
        if (e->id < 0 || static_cast<size_t>(e->id) >= k.locals.size()) fail("local " + std::to_string(e->id) + " is not declared");
        break;
      case ExprKind::Load:
        if (buffer_ok(e->id, "loaded") && e->args.size() == 1 && e->args[0]->type != Scalar::i64)
          fail("an index into " + p.buffers[static_cast<size_t>(e->id)].name + " is not i64");
        break;
      case ExprKind::Binary:
        if (e->args.size() == 2 && e->args[0]->type != e->args[1]->type)
          fail(std::string("binary ") + std::string(op_name(e->op)) + " on two types");
        break;
      default: break;
    }
  }

  void stmts(const std::vector<Stmt>& body, bool top) {
    for (const Stmt& s : body) {
      switch (s.kind) {
        case StmtKind::Loop:
          if (s.parallel && !top) fail("a parallel loop below the top level");
          if (s.var < 0) fail("a loop without a variable");
          if (std::find(vars_in_scope.begin(), vars_in_scope.end(), s.var) != vars_in_scope.end())
            fail("loop variable " + std::to_string(s.var) + " is bound twice");
          expr(s.lo), expr(s.hi);
          if (s.lo && s.hi && (s.lo->type != Scalar::i64 || s.hi->type != Scalar::i64)) fail("loop bounds are not i64");
          vars_in_scope.push_back(s.var);
          stmts(s.body, false);
          vars_in_scope.pop_back();
          break;
        case StmtKind::Store:
          expr(s.index), expr(s.value);
          if (!buffer_ok(s.target, "stored")) break;
          if (s.index && s.index->type != Scalar::i64) fail("a store index is not i64");
          if (s.value && s.value->type != scalar_of(p.buffers[static_cast<size_t>(s.target)].dtype))
            fail("stores " + std::string(scalar_name(s.value->type)) + " into " +
                 p.buffers[static_cast<size_t>(s.target)].name + " (" +
                 std::string(dtype_name(p.buffers[static_cast<size_t>(s.target)].dtype)) + ")");
          break;
        case StmtKind::Assign:
          expr(s.value);
          if (s.target < 0 || static_cast<size_t>(s.target) >= k.locals.size()) fail("assigns undeclared local " + std::to_string(s.target));
          else if (s.value && s.value->type != k.locals[static_cast<size_t>(s.target)].type)
            fail("assigns " + std::string(scalar_name(s.value->type)) + " to local $" + k.locals[static_cast<size_t>(s.target)].name);
          break;
      }
    }
  }

  // op(B) packed once per params: a State buffer of f32 that holds every panel.
  bool packed_b_ok(const GemmSpec& g) {
    if (!buffer_ok(g.packed_b, "packed B")) return false;
    const Buffer& pb = p.buffers[static_cast<size_t>(g.packed_b)];
    if (pb.storage != Storage::State || pb.dtype != DType::f32 || !is_const(g.n) || !is_const(g.k) ||
        numel(pb.shape) < gemm_packed_products(g) * gemm_packed_b_floats(g.n->ival, g.k->ival))
      fail("packed B " + pb.name + " is not an f32 State buffer holding op(B)'s panels");
    if (g.windows_b || (g.batched() && g.stride_b != 0 && !is_const(g.batch)))
      fail("packs a B that changes per call or per product");
    return true;
  }

  void gemm() {
    const GemmSpec& g = k.gemm;
    if (g.packs_b) {  // B in, its panels out: no A, no C
      if (!buffer_ok(g.b, "B") || !packed_b_ok(g)) return;
      if (!k.once_per_params) fail("packs B on every call");
      if (p.buffers[static_cast<size_t>(g.b)].dtype != DType::f32) fail("packs a B that is not f32");
      return;
    }
    if (g.packed_b >= 0) packed_b_ok(g);
    for (auto [id, role] : {std::pair{g.a, "A"}, {g.b, "B"}, {g.c, "C"}})
      if (!buffer_ok(id, role)) return;
    DType t = p.buffers[static_cast<size_t>(g.c)].dtype;
    if (!is_float(t) || p.buffers[static_cast<size_t>(g.a)].dtype != t || p.buffers[static_cast<size_t>(g.b)].dtype != t)
      fail("gemm operands of different or non-float types");
    if (g.scratch >= 0) buffer_ok(g.scratch, "scratch");
    for (const ExprP& e : {g.m, g.n, g.k, g.batch})
      if (e && e->type != Scalar::i64) fail("a gemm size is not i64");
    // Windows replace a matrix operand: their depth is the product's K (A) or N (B).
    auto windows = [&](const GemmWindows* w, bool trans, const ExprP& size, const char* which) {
      if (!w) return;
      if (trans) fail(std::string("a windowed gemm's ") + which + " is transposed (windows are read row by row only)");
      if (!is_const(size) || size->ival != w->depth())
        fail(std::string("a windowed gemm's ") + which + " is not " + std::to_string(w->depth()) + " taps x channels deep");
      if (w->cg < 1 || w->channels % w->cg != 0 || w->oh < 1 || w->ow < 1 || w->h < 1 || w->w < 1)
        fail(std::string("a windowed gemm's ") + which + " image geometry is inconsistent");
    };
    windows(g.windows.get(), g.trans_a, g.k, "A");
    windows(g.windows_b.get(), g.trans_b, g.n, "B");
    if (!k.body.empty() && (g.epilogue_value < 0 || static_cast<size_t>(g.epilogue_value) >= k.locals.size()))
      fail("a gemm epilogue without its product local");
  }
};

}  // namespace

std::vector<std::string> verify_program(const Program& p) {
  std::vector<std::string> problems;
  for (const Kernel& k : p.kernels) {
    KernelCheck c{p, k, problems, {}};
    if (k.kind == KernelKind::Gemm) {
      c.gemm();
      // The epilogue's loop variable is bound by the driver.
      if (!k.body.empty()) c.stmts(k.body, true);
    } else {
      c.stmts(k.body, true);
    }
  }
  for (const Entry& e : p.entries)
    for (int ki : e.kernels)
      if (ki < 0 || static_cast<size_t>(ki) >= p.kernels.size())
        problems.push_back("entry " + e.name + ": kernel " + std::to_string(ki) + " does not exist");
  return problems;
}

void verify_program_or_throw(const Program& p, const std::string& after) {
  auto problems = verify_program(p);
  if (problems.empty()) return;
  std::string msg = "Loop IR of '" + p.name + "' is malformed after " + after + ":";
  for (auto& s : problems) msg += "\n  " + s;
  throw std::logic_error(msg);
}

const std::vector<LoopPass>& loop_passes() {
  static const std::vector<LoopPass> passes = {
      {"fuse-gemm-epilogues",
       "an elementwise kernel that is a GEMM's only reader runs on each block of the product while it is in cache",
       [](Program& p, std::vector<std::string>* why) { fuse_gemm_epilogues(p, why); }},
      {"fuse-row-epilogues",
       "an elementwise kernel that is a loop kernel's only reader runs on each row of its output as the row is finished",
       [](Program& p, std::vector<std::string>* why) { fuse_row_epilogues(p, why); }},
      {"split-reductions", "long full reductions run as parallel chunks, folded in a fixed order",
       [](Program& p, std::vector<std::string>*) { split_reductions(p); }},
      {"plan-memory", "arena buffers are placed, reusing memory no later kernel reads; updates written in place",
       [](Program& p, std::vector<std::string>*) { plan_memory(p); }},
  };
  return passes;
}

void run_loop_passes(Program& p, const LoopPipelineOptions& o) {
  verify_program_or_throw(p, "lowering");
  for (const LoopPass& pass : loop_passes()) {
    if (pass.name.rfind("fuse-", 0) == 0 && !o.fuse) continue;
    if (std::find(o.skip.begin(), o.skip.end(), pass.name) != o.skip.end()) continue;
    pass.run(p, o.why);
    verify_program_or_throw(p, "pass '" + pass.name + "'");
    if (o.dump) *o.dump << "// ---- after " << pass.name << "\n// " << pass.contract << "\n" << print_program(p);
  }
}

}  // namespace kiln::lower
