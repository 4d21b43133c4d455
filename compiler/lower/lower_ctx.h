#pragma once
// What an op's lowering sees when it emits loop IR: its node, its input and
// output buffers, and builders for loop kernels and gemm kernels. Lowerings
// live with their ops (compiler/ops/<family>.cpp, OpDef::lower); this file
// gives them a small vocabulary so each reads like the loop nest it builds.
#include <functional>
#include <string>
#include <vector>

#include "compiler/lower/loop_ir.h"

namespace kiln::lower {

// An expression handle with operators, for writing index math and scalar code.
struct E {
  ExprP p;
  E() = default;
  E(ExprP e) : p(std::move(e)) {}                      // NOLINT: implicit on purpose
  E(int64_t v) : p(c_int(v)) {}                        // NOLINT: index constants
  E(int v) : p(c_int(v)) {}                            // NOLINT
  Scalar type() const { return p->type; }
};
E operator+(E a, E b);
E operator-(E a, E b);
E operator*(E a, E b);
E operator/(E a, E b);
E operator%(E a, E b);
E operator-(E a);
E operator<(E a, E b);
E operator<=(E a, E b);
E operator>(E a, E b);
E operator>=(E a, E b);
E operator==(E a, E b);
E operator!=(E a, E b);
E operator&&(E a, E b);
E max(E a, E b);
E min(E a, E b);
E select(E c, E a, E b);
E cast(E a, Scalar t);
E exp(E a);
E log(E a);
E sqrt(E a);
E abs(E a);
E floor(E a);
E ceil(E a);
E round_even(E a);  // to nearest, ties to even
E sin(E a);
E cos(E a);
E tanh(E a);
E erf(E a);
E pow(E a, E b);
E logical_not(E a);
E logical_or(E a, E b);
E bit_and(E a, E b);      // integers
E bit_xor(E a, E b);
E shift_right(E a, E b);  // logical: zeros shift in
E lit(double v, Scalar t);  // a constant of type t

// A buffer seen through its shape: row-major index math, open batch dimension included.
struct BufRef {
  int id = -1;
  DType dtype = DType::f32;
  Shape shape;
  Scalar scalar() const { return scalar_of(dtype); }
  int rank() const { return static_cast<int>(shape.size()); }
  E dim(int i) const;                         // static size, or N for the open dimension
  E stride(int i) const;                      // elements between neighbours along dim i
  E offset(const std::vector<E>& idx) const;  // linear index of idx
  E size() const;                             // element count (batch-dependent when open)
};

// Builds one loop kernel's statement tree; loops nest through the callback.
class KernelBuilder {
 public:
  explicit KernelBuilder(Kernel& k);
  // for name in [lo, hi): body(name). `parallel` only on a top-level loop
  // whose iterations write disjoint memory.
  void loop(const std::string& name, E lo, E hi, const std::function<void(E)>& body, bool parallel = false);
  // Nested loops over every index of `shape` (outermost first). parallel_outer:
  // the outermost loop runs in parallel (rank >= 3: the first two dims as one).
  void loops(const Shape& shape, const std::function<void(const std::vector<E>&)>& body, bool parallel_outer = false);
  void loops(const std::vector<E>& extents, const std::function<void(const std::vector<E>&)>& body,
             bool parallel_outer = false);
  E load(const BufRef& b, E index) const;
  void store(const BufRef& b, E index, E value);
  // A mutable scalar local: declared and set to `init` here.
  E let(const std::string& name, E init);
  void set(const E& local_ref, E value);
  // Says that here, inside a loop, row `row` of `b` (its `cols` elements from
  // row * cols on) is final: a consumer may run on it while it is in cache
  // (compiler/lower/row_epilogue.h). Once per kernel, every row reached once.
  void row_final(const BufRef& b, E row, int64_t cols);
  Kernel& kernel() { return k_; }

 private:
  Kernel& k_;
  std::vector<std::vector<Stmt>*> stack_;
  std::vector<int> open_loops_;  // variables of the loops being built, outermost first
};

struct LowerCtx {
  Program& program;
  const Graph& graph;
  NodeId id;
  const Node& node;
  const Attrs& attrs;            // node.attrs
  std::vector<BufRef> in;        // one per node input
  BufRef out;                    // the node's value
  std::vector<Kernel> kernels;   // what the lowering emitted, in order

  LowerCtx(Program& p, const Graph& g, NodeId id);

  int64_t max_batch() const { return program.max_batch; }
  // Starts a loop kernel for this node; `comment` says what it computes.
  KernelBuilder kernel(const std::string& comment);
  // Emits a gemm kernel: C = op(A) @ op(B) over 2-D buffers (leading dims from their shapes).
  void gemm(const BufRef& a, bool trans_a, const BufRef& b, bool trans_b, const BufRef& c, const std::string& comment);
  // Loads input i at `idx` (indices of the input's own shape). A one-element
  // constant folds into a literal.
  E in_at(KernelBuilder& k, int i, const std::vector<E>& idx) const;
  // One kernel computing out = f(inputs) elementwise, with numpy broadcasting:
  // adjacent dimensions that are contiguous in every operand are merged, the
  // innermost loop is contiguous in the output, big kernels run in parallel.
  void elementwise(const std::function<E(const std::vector<E>&)>& f, const std::string& comment);
  // Set by fusion (compiler/lower/fusion.cpp): elementwise() hands its scalar
  // function here instead of emitting a kernel, so a group composes them.
  using ElementwiseFn = std::function<E(const std::vector<E>&)>;
  std::function<void(const ElementwiseFn&, const std::string&)> capture_elementwise;
  // A scratch arena buffer (bytes sized for the maximum batch) private to this node.
  int scratch(const std::string& purpose, DType dtype, Shape shape);
  // A packed gemm's scratch sized again for its spec (after its windows are set: deeper blocks).
  void size_gemm_scratch(const GemmSpec& g);
};

// Kernels with at least this many elements (at the maximum batch) run their
// outer loop through the runtime's parallel_for.
constexpr int64_t kParallelMinElements = int64_t{1} << 15;

}  // namespace kiln::lower
