// Text form of the Loop IR (`kiln ir G --stage loops`): one block per kernel,
// headed by the graph node (and JSON node) it computes.
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "compiler/lower/loop_ir.h"

namespace kiln::lower {

static std::string number(double v, Scalar t) {
  if (!is_float(t)) return std::to_string(static_cast<int64_t>(v));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  std::string s = buf;
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

static std::string buffer_label(const Program* p, int id) {
  if (p && id >= 0 && static_cast<size_t>(id) < p->buffers.size()) return "%" + p->buffers[id].name;
  return "%b" + std::to_string(id);
}

std::string print_expr(const ExprP& e, const Program* p, const Kernel* k) {
  auto sub = [&](size_t i) { return print_expr(e->args[i], p, k); };
  switch (e->kind) {
    case ExprKind::Const:
      if (e->type == Scalar::i1) return e->ival ? "true" : "false";
      return number(is_float(e->type) ? e->fval : static_cast<double>(e->ival), e->type);
    case ExprKind::Var:
      if (k && e->id >= 0 && static_cast<size_t>(e->id) < k->var_names.size()) return k->var_names[e->id];
      return "i" + std::to_string(e->id);
    case ExprKind::Batch: return "N";
    case ExprKind::Local:
      if (k && e->id >= 0 && static_cast<size_t>(e->id) < k->locals.size()) return "$" + k->locals[e->id].name;
      return "$l" + std::to_string(e->id);
    case ExprKind::Load: return buffer_label(p, e->id) + "[" + sub(0) + "]";
    case ExprKind::Unary:
      if (e->op == Op::Neg) return "-" + sub(0);
      if (e->op == Op::Not) return "!" + sub(0);
      return std::string(op_name(e->op)) + "(" + sub(0) + ")";
    case ExprKind::Binary:
      if (e->op == Op::Max || e->op == Op::Min || e->op == Op::Pow) return std::string(op_name(e->op)) + "(" + sub(0) + ", " + sub(1) + ")";
      return "(" + sub(0) + " " + std::string(op_name(e->op)) + " " + sub(1) + ")";
    case ExprKind::Select: return "select(" + sub(0) + ", " + sub(1) + ", " + sub(2) + ")";
    case ExprKind::Cast: return std::string(scalar_name(e->type)) + "(" + sub(0) + ")";
  }
  return "?";
}

static void print_stmts(std::ostringstream& os, const Program& p, const Kernel& k, const std::vector<Stmt>& body,
                        int depth) {
  std::string pad(2 * depth, ' ');
  for (const Stmt& s : body) {
    switch (s.kind) {
      case StmtKind::Loop:
        os << pad << (s.parallel ? "parallel for " : "for ") << print_expr(var(s.var), &p, &k) << " in ["
           << print_expr(s.lo, &p, &k) << ", " << print_expr(s.hi, &p, &k) << "):\n";
        print_stmts(os, p, k, s.body, depth + 1);
        break;
      case StmtKind::Store:
        os << pad << buffer_label(&p, s.target) << "[" << print_expr(s.index, &p, &k) << "] = "
           << print_expr(s.value, &p, &k) << "\n";
        break;
      case StmtKind::Assign:
        os << pad << print_expr(local(s.target, k.locals.at(s.target).type), &p, &k) << " = "
           << print_expr(s.value, &p, &k) << "\n";
        break;
    }
  }
}

static std::string buffer_where(const Program& p, const Buffer& b) {
  if (b.is_view())
    return "view of %" + p.buffers.at(static_cast<size_t>(b.view_of)).name + " from element " + std::to_string(b.view_offset);
  std::string s(storage_name(b.storage));
  if (b.storage == Storage::Input || b.storage == Storage::Output) return s + " #" + std::to_string(b.offset);
  if (b.storage == Storage::Constant) return s + " (" + std::to_string(b.data.size()) + " values)";
  return s + " +" + std::to_string(b.offset);
}

// A gemm operand: its buffer, or the windows it is read through.
static std::string operand(const Program& p, int buffer, const GemmWindows* w) {
  if (!w) return buffer_label(&p, buffer);
  std::ostringstream os;
  os << "windows(" << buffer_label(&p, buffer) << ": " << w->kh << "x" << w->kw << " taps of " << w->cg << " of "
     << w->channels << " channels, stride " << w->sh << "x" << w->sw << ", dilation " << w->dh << "x" << w->dw
     << ", pad " << w->pad_top << "," << w->pad_left << ", " << w->h << "x" << w->w << " -> " << w->oh << "x" << w->ow
     << ")";
  return os.str();
}

std::string print_kernel(const Program& p, const Kernel& k) {
  std::ostringstream os;
  os << "kernel " << k.name << "  # node " << k.node;
  if (!k.origin.empty() && k.origin != k.node) os << " (JSON node " << k.origin << ")";
  if (k.once_per_params) os << "  [once per parameter load]";
  os << "\n";
  if (!k.comment.empty()) os << "  # " << k.comment << "\n";
  if (k.kind == KernelKind::Gemm && k.gemm.packs_b) {
    const GemmSpec& g = k.gemm;
    os << "  pack " << buffer_label(&p, g.packed_b) << " = panels of " << operand(p, g.b, nullptr)
       << (g.trans_b ? "^T" : "") << "  N=" << print_expr(g.n, &p, &k) << " K=" << print_expr(g.k, &p, &k)
       << " ldb=" << g.ldb << " (the product's M=" << print_expr(g.m, &p, &k) << ")\n";
  } else if (k.kind == KernelKind::Gemm) {
    const GemmSpec& g = k.gemm;
    os << "  gemm ";
    if (g.batched())
      os << "[" << print_expr(g.batch, &p, &k) << " products, strides a=" << g.stride_a << " b=" << g.stride_b
         << " c=" << g.stride_c << "] ";
    os << buffer_label(&p, g.c) << (g.accumulate ? " += " : " = ");
    os << operand(p, g.a, g.windows.get()) << (g.trans_a ? "^T" : "") << " @ " << operand(p, g.b, g.windows_b.get());
    os << (g.trans_b ? "^T" : "")
       << "  M=" << print_expr(g.m, &p, &k) << " N=" << print_expr(g.n, &p, &k) << " K=" << print_expr(g.k, &p, &k)
       << (g.windows ? "" : " lda=" + std::to_string(g.lda)) << (g.windows_b ? "" : " ldb=" + std::to_string(g.ldb))
       << " ldc=" << g.ldc;
    if (g.scratch >= 0) os << " scratch=" << buffer_label(&p, g.scratch);
    if (g.packed_b >= 0) os << " B packed in " << buffer_label(&p, g.packed_b);
    if (g.a_triangle != GemmSpec::Triangle::none)
      os << " op(A) " << (g.a_triangle == GemmSpec::Triangle::lower ? "lower" : "upper") << "-triangular";
    if (g.c_lower_read) os << " C read on and below its diagonal";
    if ((g.a_triangle != GemmSpec::Triangle::none || g.c_lower_read) && std::getenv("KILN_NO_TRIANGLES"))
      os << " (KILN_NO_TRIANGLES: every term computed)";
    os << "\n";
    if (!k.body.empty()) {
      os << "  epilogue, on each block of the product ($" << k.locals.at(static_cast<size_t>(g.epilogue_value)).name
         << " = its element):\n";
      print_stmts(os, p, k, k.body, 2);
    }
  } else {
    print_stmts(os, p, k, k.body, 1);
  }
  return os.str();
}

std::string print_program(const Program& p) {
  std::ostringstream os;
  os << "program " << p.name << "  max_batch=" << p.max_batch << "  arena=" << p.arena_bytes
     << " bytes (intermediates " << p.intermediate_bytes << " bytes)  params=" << p.param_bytes << " bytes  state=" << p.state_bytes << " bytes\n";
  os << "buffers:\n";
  for (size_t i = 0; i < p.buffers.size(); ++i) {
    const Buffer& b = p.buffers[i];
    os << "  %" << b.name << " : " << dtype_name(b.dtype) << shape_str(b.shape) << "  " << buffer_where(p, b) << "\n";
  }
  for (const Entry& e : p.entries) {
    os << "\nentry " << e.name << "(";
    for (size_t i = 0; i < e.inputs.size(); ++i) os << (i ? ", " : "") << e.inputs[i].name;
    os << ") -> (";
    for (size_t i = 0; i < e.outputs.size(); ++i) os << (i ? ", " : "") << e.outputs[i].name;
    os << ")  arena " << e.arena_bytes << " bytes, " << e.kernels.size() << " kernels\n";
    for (int ki : e.kernels) os << print_kernel(p, p.kernels[ki]);
  }
  return os.str();
}

}  // namespace kiln::lower
