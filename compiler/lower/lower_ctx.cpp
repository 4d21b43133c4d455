#include "compiler/lower/lower_ctx.h"

#include "compiler/lower/gemm_blocking.h"
#include "compiler/lower/inject_bug.h"

#include <stdexcept>

namespace kiln::lower {

E operator+(E a, E b) { return binary(Op::Add, a.p, b.p); }
E operator-(E a, E b) { return binary(Op::Sub, a.p, b.p); }
E operator*(E a, E b) { return binary(Op::Mul, a.p, b.p); }
E operator/(E a, E b) { return binary(Op::Div, a.p, b.p); }
E operator%(E a, E b) { return binary(Op::Mod, a.p, b.p); }
E operator-(E a) { return unary(Op::Neg, a.p); }
E operator<(E a, E b) { return binary(Op::Lt, a.p, b.p); }
E operator<=(E a, E b) { return binary(Op::Le, a.p, b.p); }
E operator>(E a, E b) { return binary(Op::Gt, a.p, b.p); }
E operator>=(E a, E b) { return binary(Op::Ge, a.p, b.p); }
E operator==(E a, E b) { return binary(Op::Eq, a.p, b.p); }
E operator!=(E a, E b) { return binary(Op::Ne, a.p, b.p); }
E operator&&(E a, E b) { return binary(Op::And, a.p, b.p); }
E max(E a, E b) { return binary(Op::Max, a.p, b.p); }
E bit_and(E a, E b) { return binary(Op::And, a.p, b.p); }
E bit_xor(E a, E b) { return binary(Op::Xor, a.p, b.p); }
E shift_right(E a, E b) { return binary(Op::Shr, a.p, b.p); }
E min(E a, E b) { return binary(Op::Min, a.p, b.p); }
E select(E c, E a, E b) { return lower::select(c.p, a.p, b.p); }
E cast(E a, Scalar t) { return lower::cast(a.p, t); }
E exp(E a) { return unary(Op::Exp, a.p); }
E log(E a) { return unary(Op::Log, a.p); }
E sqrt(E a) { return unary(Op::Sqrt, a.p); }
E abs(E a) { return unary(Op::Abs, a.p); }
E floor(E a) { return unary(Op::Floor, a.p); }
E ceil(E a) { return unary(Op::Ceil, a.p); }
E round_even(E a) { return unary(Op::Round, a.p); }
E sin(E a) { return unary(Op::Sin, a.p); }
E cos(E a) { return unary(Op::Cos, a.p); }
E tanh(E a) { return unary(Op::Tanh, a.p); }
E erf(E a) { return unary(Op::Erf, a.p); }
E pow(E a, E b) { return binary(Op::Pow, a.p, b.p); }
E logical_not(E a) { return unary(Op::Not, a.p); }
E logical_or(E a, E b) { return binary(Op::Or, a.p, b.p); }
E lit(double v, Scalar t) { return c_of(v, t); }

// ---- BufRef ----

E BufRef::dim(int i) const {
  int64_t d = shape.at(static_cast<size_t>(i));
  return d == kOpenDim ? E(batch()) : E(d);
}

E BufRef::stride(int i) const {
  E s = 1;
  for (int j = rank() - 1; j > i; --j) s = s * dim(j);
  return s;
}

E BufRef::offset(const std::vector<E>& idx) const {
  if (static_cast<int>(idx.size()) != rank())
    throw std::logic_error("index of rank " + std::to_string(idx.size()) + " into a rank-" + std::to_string(rank()) +
                           " buffer");
  E off = 0;
  for (int i = 0; i < rank(); ++i) off = off + idx[i] * stride(i);
  return off;
}

E BufRef::size() const {
  E s = 1;
  for (int i = 0; i < rank(); ++i) s = s * dim(i);
  return s;
}

// ---- KernelBuilder ----

KernelBuilder::KernelBuilder(Kernel& k) : k_(k) { stack_.push_back(&k_.body); }

void KernelBuilder::loop(const std::string& name, E lo, E hi, const std::function<void(E)>& body, bool parallel) {
  if (parallel && stack_.size() != 1) throw std::logic_error("a parallel loop must be top-level in its kernel");
  int v = static_cast<int>(k_.var_names.size());
  bool taken = false;
  for (auto& n : k_.var_names) taken = taken || n == name;
  k_.var_names.push_back(taken ? name + std::to_string(v) : name);
  std::vector<Stmt> inner;
  stack_.push_back(&inner);
  open_loops_.push_back(v);
  body(E(var(v)));
  open_loops_.pop_back();
  stack_.pop_back();
  stack_.back()->push_back(loop_stmt(v, lo.p, hi.p, std::move(inner), parallel));
}

void KernelBuilder::loops(const Shape& shape, const std::function<void(const std::vector<E>&)>& body,
                          bool parallel_outer) {
  std::vector<E> extents;
  for (int64_t d : shape) extents.push_back(d == kOpenDim ? E(batch()) : E(d));
  loops(extents, body, parallel_outer);
}

void KernelBuilder::loops(const std::vector<E>& extents, const std::function<void(const std::vector<E>&)>& body,
                          bool parallel_outer) {
  std::vector<E> idx;
  std::function<void(size_t)> level = [&](size_t d) {
    if (d == extents.size()) {
      body(idx);
      return;
    }
    loop("i" + std::to_string(d), 0, extents[d], [&](E i) {
      idx.push_back(i);
      level(d + 1);
      idx.pop_back();
    }, parallel_outer && d == 0);
  };
  // In parallel, the first two dimensions are one loop: one image (inference
  // at batch 1) still splits over its rows.
  if (parallel_outer && extents.size() >= 3) {
    loop("i0_1", 0, extents[0] * extents[1], [&](E i) {
      idx.push_back(let("i0", i / extents[1]));
      idx.push_back(let("i1", i % extents[1]));
      level(2);
      idx.clear();
    }, true);
    return;
  }
  level(0);
}

E KernelBuilder::load(const BufRef& b, E index) const { return lower::load(b.id, b.scalar(), index.p); }

void KernelBuilder::store(const BufRef& b, E index, E value) {
  if (value.type() != b.scalar())
    throw std::logic_error("storing a " + std::string(scalar_name(value.type())) + " into a " +
                           std::string(dtype_name(b.dtype)) + " buffer");
  stack_.back()->push_back(store_stmt(b.id, index.p, value.p));
  for (int w : k_.writes)
    if (w == b.id) return;
  k_.writes.push_back(b.id);
}

E KernelBuilder::let(const std::string& name, E init) {
  int id = static_cast<int>(k_.locals.size());
  k_.locals.push_back({name, init.type()});
  stack_.back()->push_back(assign_stmt(id, init.p));
  return E(local(id, init.type()));
}

void KernelBuilder::row_final(const BufRef& b, E row, int64_t cols) {
  if (open_loops_.empty()) throw std::logic_error("row_final() belongs inside a loop");
  if (k_.row_site) throw std::logic_error("a kernel finishes its rows in one place");
  k_.row_site = Kernel::RowSite{b.id, open_loops_.back(), stack_.back()->size(), row.p, cols};
}

void KernelBuilder::set(const E& l, E value) {
  if (l.p->kind != ExprKind::Local) throw std::logic_error("set() needs a local made by let()");
  stack_.back()->push_back(assign_stmt(l.p->id, value.p));
}

// ---- LowerCtx ----

LowerCtx::LowerCtx(Program& p, const Graph& g, NodeId node_id)
    : program(p), graph(g), id(node_id), node(g.node(node_id)), attrs(node.attrs) {}

KernelBuilder LowerCtx::kernel(const std::string& comment) {
  Kernel k;
  k.kind = KernelKind::Loops;
  k.node = node.name;
  k.origin = node.origin;
  k.comment = comment;
  kernels.push_back(std::move(k));
  return KernelBuilder(kernels.back());
}

void LowerCtx::gemm(const BufRef& a, bool trans_a, const BufRef& b, bool trans_b, const BufRef& c,
                    const std::string& comment) {
  if (a.rank() != 2 || b.rank() != 2 || c.rank() != 2) throw std::logic_error("gemm needs matrices");
  for (const BufRef* r : {&a, &b, &c})
    if (r->shape[1] == kOpenDim) throw std::logic_error("gemm: a row length may not be the open dimension");
  Kernel k;
  k.kind = KernelKind::Gemm;
  k.node = node.name;
  k.origin = node.origin;
  k.comment = comment;
  GemmSpec& g = k.gemm;
  g.m = (trans_a ? a.dim(1) : a.dim(0)).p;
  g.k = (trans_a ? a.dim(0) : a.dim(1)).p;
  g.n = (trans_b ? b.dim(0) : b.dim(1)).p;
  g.a = a.id, g.b = b.id, g.c = c.id;
  g.lda = a.shape[1], g.ldb = b.shape[1], g.ldc = c.shape[1];
  g.trans_a = trans_a, g.trans_b = trans_b;
  if (gemm_packed(c.dtype)) {
    // Packing slots of the register-blocked kernel (compiler/codegen/gemm_driver.cpp).
    g.scratch = scratch("packed " + node.name + " panels", c.dtype, {gemm_scratch_floats(g.n->ival)});
  } else if (trans_b) {
    g.scratch = scratch("packed " + node.name + " B", b.dtype, {b.shape[1], b.shape[0]});
  }
  k.writes = {c.id};
  kernels.push_back(std::move(k));
}

E LowerCtx::in_at(KernelBuilder& k, int i, const std::vector<E>& idx) const {
  const BufRef& r = in.at(static_cast<size_t>(i));
  const Buffer& b = program.buffers.at(static_cast<size_t>(r.id));
  if (b.storage == Storage::Constant && b.data.size() == 1) return lit(b.data[0], r.scalar());
  return k.load(r, r.offset(idx));
}

void LowerCtx::size_gemm_scratch(const GemmSpec& g) {
  if (g.scratch < 0) return;
  Buffer& b = program.buffers.at(static_cast<size_t>(g.scratch));
  if (b.shape.size() == 1 && gemm_packed(b.dtype)) b.shape = {gemm_scratch_floats(g.n->ival, g.windows != nullptr)};
}

int LowerCtx::scratch(const std::string& purpose, DType dtype, Shape shape) {
  Buffer b;
  b.name = purpose;
  b.dtype = dtype;
  b.shape = std::move(shape);
  b.storage = Storage::Arena;
  b.offset = -1;  // placed by lower_program after the node is lowered
  b.node = kNoNode;
  program.buffers.push_back(std::move(b));
  return static_cast<int>(program.buffers.size() - 1);
}

// ---- elementwise with broadcasting ----

namespace {
// A size or stride c * N^n (N = the batch size), compared without knowing N.
struct Sym {
  int64_t c = 1;
  int n = 0;
  bool operator==(const Sym&) const = default;
  Sym operator*(const Sym& o) const { return {c * o.c, n + o.n}; }
  E expr() const {
    E e = c;
    for (int i = 0; i < n; ++i) e = E(batch()) * e;
    return e;
  }
};
Sym sym_dim(int64_t d) { return d == kOpenDim ? Sym{1, 1} : Sym{d, 0}; }
}  // namespace

void LowerCtx::elementwise(const std::function<E(const std::vector<E>&)>& f, const std::string& comment) {
  if (capture_elementwise) {
    capture_elementwise(f, comment);
    return;
  }
  const int r = out.rank();
  std::vector<Sym> size(static_cast<size_t>(r));
  for (int d = 0; d < r; ++d) size[d] = sym_dim(out.shape[d]);
  // strides[o][d]: operand o (0 = output, then inputs) along output dim d.
  std::vector<std::vector<Sym>> strides;
  std::vector<const BufRef*> operands{&out};
  for (auto& b : in) operands.push_back(&b);
  std::vector<bool> folded(operands.size(), false);
  for (size_t o = 0; o < operands.size(); ++o) {
    const BufRef& b = *operands[o];
    const Buffer& buf = program.buffers.at(static_cast<size_t>(b.id));
    folded[o] = o > 0 && buf.storage == Storage::Constant && buf.data.size() == 1;
    std::vector<Sym> s(static_cast<size_t>(r), Sym{0, 0});
    Sym acc{1, 0};
    int lead = r - b.rank();
    for (int d = b.rank() - 1; d >= 0; --d) {
      bool broadcast = b.shape[d] == 1 && out.shape[d + lead] != 1;
      s[d + lead] = broadcast ? Sym{0, 0} : acc;
      if (broadcast && d + 1 < b.rank() && injected_bug("broadcast-stride")) s[d + 1 + lead] = Sym{0, 0};
      acc = acc * sym_dim(b.shape[d]);
    }
    strides.push_back(std::move(s));
  }
  // Drop size-1 dims, then merge neighbours contiguous in every operand.
  std::vector<int> dims;
  for (int d = 0; d < r; ++d)
    if (!(size[d] == Sym{1, 0})) dims.push_back(d);
  std::vector<Sym> msize;
  std::vector<std::vector<Sym>> mstride(operands.size());
  for (int d : dims) {
    bool merge = !msize.empty();
    for (size_t o = 0; merge && o < operands.size(); ++o) {
      const Sym& outer = mstride[o].back();
      Sym want = strides[o][d] * size[d];
      merge = outer == want || (outer.c == 0 && strides[o][d].c == 0);
    }
    if (merge) {
      msize.back() = msize.back() * size[d];
      for (size_t o = 0; o < operands.size(); ++o) mstride[o].back() = strides[o][d];
    } else {
      msize.push_back(size[d]);
      for (size_t o = 0; o < operands.size(); ++o) mstride[o].push_back(strides[o][d]);
    }
  }
  KernelBuilder k = kernel(comment);
  bool parallel = numel(out.shape, max_batch()) >= kParallelMinElements;
  std::vector<E> vars;
  std::function<void(size_t)> level = [&](size_t d) {
    if (d == msize.size()) {
      auto index = [&](size_t o) {
        E off = 0;
        for (size_t j = 0; j < vars.size(); ++j)
          if (mstride[o][j].c != 0) off = off + vars[j] * mstride[o][j].expr();
        return off;
      };
      std::vector<E> values;
      for (size_t o = 1; o < operands.size(); ++o) {
        const Buffer& buf = program.buffers.at(static_cast<size_t>(operands[o]->id));
        values.push_back(folded[o] ? lit(buf.data[0], operands[o]->scalar()) : k.load(*operands[o], index(o)));
      }
      k.store(out, index(0), f(values));
      return;
    }
    k.loop("i" + std::to_string(d), 0, msize[d].expr(), [&](E i) {
      vars.push_back(i);
      level(d + 1);
      vars.pop_back();
    }, parallel && d == 0);
  };
  level(0);
}

}  // namespace kiln::lower
