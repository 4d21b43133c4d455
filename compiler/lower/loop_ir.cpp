#include "compiler/lower/loop_ir.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace kiln::lower {

Scalar scalar_of(DType t) {
  switch (t) {
    case DType::f32: return Scalar::f32;
    case DType::f64: return Scalar::f64;
    case DType::i32: return Scalar::i32;
    case DType::i64: return Scalar::i64;
    case DType::boolean: return Scalar::i1;
  }
  return Scalar::f32;
}

std::string_view scalar_name(Scalar s) {
  switch (s) {
    case Scalar::f32: return "f32";
    case Scalar::f64: return "f64";
    case Scalar::i32: return "i32";
    case Scalar::i64: return "i64";
    case Scalar::i1: return "bool";
  }
  return "?";
}

std::string_view op_name(Op op) {
  switch (op) {
    case Op::Neg: return "neg";
    case Op::Exp: return "exp";
    case Op::Log: return "log";
    case Op::Sqrt: return "sqrt";
    case Op::Abs: return "abs";
    case Op::Not: return "not";
    case Op::Floor: return "floor";
    case Op::Ceil: return "ceil";
    case Op::Round: return "round";
    case Op::Sin: return "sin";
    case Op::Cos: return "cos";
    case Op::Tanh: return "tanh";
    case Op::Erf: return "erf";
    case Op::Add: return "+";
    case Op::Sub: return "-";
    case Op::Mul: return "*";
    case Op::Div: return "/";
    case Op::Mod: return "%";
    case Op::Max: return "max";
    case Op::Min: return "min";
    case Op::Pow: return "pow";
    case Op::And: return "&&";
    case Op::Or: return "||";
    case Op::Xor: return "^";
    case Op::Shr: return ">>";
    case Op::Lt: return "<";
    case Op::Le: return "<=";
    case Op::Gt: return ">";
    case Op::Ge: return ">=";
    case Op::Eq: return "==";
    case Op::Ne: return "!=";
  }
  return "?";
}

std::string_view storage_name(Storage s) {
  switch (s) {
    case Storage::Arena: return "arena";
    case Storage::Param: return "params";
    case Storage::State: return "state";
    case Storage::Input: return "input";
    case Storage::Output: return "output";
    case Storage::Constant: return "constant";
  }
  return "?";
}

int64_t Buffer::bytes(int64_t batch) const {
  if (storage == Storage::Constant) return static_cast<int64_t>(data.size() * dtype_size(dtype));
  return numel(shape, batch) * static_cast<int64_t>(dtype_size(dtype));
}

bool Program::viewed(int buffer) const {
  return std::any_of(buffers.begin(), buffers.end(), [&](const Buffer& b) { return b.view_of == buffer; });
}

const Entry* Program::entry(std::string_view name) const {
  for (auto& e : entries)
    if (e.name == name) return &e;
  return nullptr;
}

// ---- constructors ----

static std::shared_ptr<Expr> make(ExprKind k, Scalar t) {
  auto e = std::make_shared<Expr>();
  e->kind = k;
  e->type = t;
  return e;
}

ExprP c_int(int64_t v, Scalar t) {
  auto e = make(ExprKind::Const, t);
  e->ival = v;
  e->fval = static_cast<double>(v);
  return e;
}

ExprP c_float(double v, Scalar t) {
  auto e = make(ExprKind::Const, t);
  e->fval = v;
  return e;
}

ExprP c_of(double v, Scalar t) {
  if (is_float(t)) return c_float(v, t);
  return c_int(t == Scalar::i1 ? (v != 0) : static_cast<int64_t>(v), t);
}

ExprP var(int id) {
  auto e = make(ExprKind::Var, Scalar::i64);
  e->id = id;
  return e;
}

ExprP batch() { return make(ExprKind::Batch, Scalar::i64); }

ExprP local(int id, Scalar t) {
  auto e = make(ExprKind::Local, t);
  e->id = id;
  return e;
}

ExprP load(int buffer, Scalar t, ExprP index) {
  if (index->type != Scalar::i64) throw std::logic_error("load index must be i64");
  auto e = make(ExprKind::Load, t);
  e->id = buffer;
  e->args = {std::move(index)};
  return e;
}

bool is_const(const ExprP& e) { return e->kind == ExprKind::Const; }

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



static bool const_is(const ExprP& e, double v) {
  return is_const(e) && (is_float(e->type) ? e->fval == v : e->ival == static_cast<int64_t>(v));
}

ExprP unary(Op op, ExprP a) {
  if (op == Op::Neg && is_const(a))
    return is_float(a->type) ? c_float(-a->fval, a->type) : c_int(-a->ival, a->type);
  auto e = make(ExprKind::Unary, a->type);
  e->op = op;
  e->args = {std::move(a)};
  return e;
}

ExprP binary(Op op, ExprP a, ExprP b) {
  if (a->type != b->type)
    throw std::logic_error("binary " + std::string(op_name(op)) + " on " + std::string(scalar_name(a->type)) + " and " +
                           std::string(scalar_name(b->type)));
  bool integer = !is_float(a->type) && a->type != Scalar::i1;
  // Index arithmetic folds, so printed indices stay readable and codegen sees
  // simple forms; float arithmetic is left exactly as the graph wrote it.
  if (integer) {
    if (is_const(a) && is_const(b)) {
      int64_t x = a->ival, y = b->ival;
      switch (op) {
        case Op::Add: return c_int(x + y, a->type);
        case Op::Sub: return c_int(x - y, a->type);
        case Op::Mul: return c_int(x * y, a->type);
        case Op::Max: return c_int(std::max(x, y), a->type);
        case Op::Min: return c_int(std::min(x, y), a->type);
        default: break;
      }
    }
    if (op == Op::Add && const_is(a, 0)) return b;
    if ((op == Op::Add || op == Op::Sub) && const_is(b, 0)) return a;
    if (op == Op::Mul && (const_is(a, 0) || const_is(b, 0))) return c_int(0, a->type);
    if (op == Op::Mul && const_is(a, 1)) return b;
    if ((op == Op::Mul || op == Op::Div) && const_is(b, 1)) return a;
    if ((op == Op::Max || op == Op::Min) && same_expr(a, b)) return a;
  }
  auto e = make(ExprKind::Binary, is_compare(op) ? Scalar::i1 : a->type);
  e->op = op;
  e->args = {std::move(a), std::move(b)};
  return e;
}

ExprP select(ExprP c, ExprP a, ExprP b) {
  if (c->type != Scalar::i1) throw std::logic_error("select condition must be bool");
  if (a->type != b->type) throw std::logic_error("select branches differ in type");
  if (is_const(c)) return c->ival ? a : b;
  auto e = make(ExprKind::Select, a->type);
  e->args = {std::move(c), std::move(a), std::move(b)};
  return e;
}

ExprP cast(ExprP a, Scalar t) {
  if (a->type == t) return a;
  if (is_const(a)) {
    double v = is_float(a->type) ? a->fval : static_cast<double>(a->ival);
    if (!is_float(t) && t != Scalar::i1) v = std::trunc(v);
    return c_of(v, t);
  }
  auto e = make(ExprKind::Cast, t);
  e->args = {std::move(a)};
  return e;
}

// Whether `e` contains a leaf of `kind` (Local or Var) with id `id`.
static bool mentions(const ExprP& e, ExprKind kind, int id) {
  if (!e) return false;
  if (e->kind == kind && e->id == id) return true;
  for (const ExprP& a : e->args)
    if (mentions(a, kind, id)) return true;
  return false;
}

bool mentions_local(const ExprP& e, int local) { return mentions(e, ExprKind::Local, local); }

bool mentions_var(const ExprP& e, int v) { return mentions(e, ExprKind::Var, v); }

bool mentions_load(const ExprP& e, int buffer) { return mentions(e, ExprKind::Load, buffer); }

bool same_expr(const ExprP& a, const ExprP& b) {
  if (a == b) return true;
  if (a->kind != b->kind || a->type != b->type || a->op != b->op || a->id != b->id) return false;
  if (a->kind == ExprKind::Const) return a->fval == b->fval && a->ival == b->ival;
  if (a->args.size() != b->args.size()) return false;
  for (size_t i = 0; i < a->args.size(); ++i)
    if (!same_expr(a->args[i], b->args[i])) return false;
  return true;
}

Stmt loop_stmt(int v, ExprP lo, ExprP hi, std::vector<Stmt> body, bool parallel) {
  Stmt s;
  s.kind = StmtKind::Loop;
  s.var = v;
  s.lo = std::move(lo);
  s.hi = std::move(hi);
  s.body = std::move(body);
  s.parallel = parallel;
  return s;
}

Stmt store_stmt(int buffer, ExprP index, ExprP value) {
  Stmt s;
  s.kind = StmtKind::Store;
  s.target = buffer;
  s.index = std::move(index);
  s.value = std::move(value);
  return s;
}

Stmt assign_stmt(int l, ExprP value) {
  Stmt s;
  s.kind = StmtKind::Assign;
  s.target = l;
  s.value = std::move(value);
  return s;
}

}  // namespace kiln::lower

namespace kiln::lower {

std::string GemmWindows::key() const {
  auto s = [](int64_t v) { return v < 0 ? "m" + std::to_string(-v) : std::to_string(v); };
  return "h" + s(h) + "w" + s(w) + "c" + s(channels) + "g" + s(cg) + "_k" + s(kh) + "x" + s(kw) + "_s" + s(sh) + "x" +
         s(sw) + "_d" + s(dh) + "x" + s(dw) + "_p" + s(pad_top) + "x" + s(pad_left) + "_o" + s(oh) + "x" + s(ow);
}

}  // namespace kiln::lower
