#pragma once
// Loop IR: what the backend compiles. A Program is a set of buffers (one arena
// with compile-time offsets, persistent params/state, step inputs/outputs,
// constants) and, per entry point, a list of kernels. A kernel is either a
// loop nest (loops, stores, scalar locals over scalar expressions) or a
// structured kernel (gemm) that codegen expands itself, so a better expansion
// can replace the default one without touching lowering.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "compiler/ir/graph.h"

namespace kiln::lower {

// Scalar types of expressions. Booleans are i1 in registers and one byte in memory.
enum class Scalar : uint8_t { f32, f64, i32, i64, i1 };
Scalar scalar_of(DType t);
std::string_view scalar_name(Scalar s);
inline bool is_float(Scalar s) { return s == Scalar::f32 || s == Scalar::f64; }

enum class ExprKind : uint8_t {
  Const,    // number (fval for floats, ival for integers and i1)
  Var,      // a loop variable (id), always i64
  Batch,    // the run-time batch size, i64
  Local,    // a kernel-local scalar (id)
  Load,     // buffer[id] at args[0] (an i64 element index)
  Unary,    // op(args[0])
  Binary,   // op(args[0], args[1])
  Select,   // args[0] ? args[1] : args[2]
  Cast,     // args[0] converted to `type`
};

enum class Op : uint8_t {
  // unary
  Neg, Exp, Log, Sqrt, Abs, Not, Floor, Ceil, Round, Sin, Cos, Tanh, Erf,
  // binary arithmetic (same type in and out); Round is to nearest, ties to even
  Add, Sub, Mul, Div, Mod, Max, Min, Pow, And, Or,
  // integer bits (counter-based random numbers): xor, shift right filling zeros
  Xor, Shr,
  // comparisons (-> i1)
  Lt, Le, Gt, Ge, Eq, Ne,
};
std::string_view op_name(Op op);
inline bool is_compare(Op op) { return op >= Op::Lt; }

struct Expr;
using ExprP = std::shared_ptr<const Expr>;

struct Expr {
  ExprKind kind = ExprKind::Const;
  Scalar type = Scalar::f32;
  Op op = Op::Add;
  int id = -1;             // Var, Local, Load (buffer id)
  double fval = 0;         // Const (floats)
  int64_t ival = 0;        // Const (integers, i1)
  std::vector<ExprP> args;
};

// Constructors with light folding (constants, x+0, x*1, x*0 for integers).
ExprP c_int(int64_t v, Scalar t = Scalar::i64);
ExprP c_float(double v, Scalar t = Scalar::f32);
ExprP c_of(double v, Scalar t);     // a constant of any scalar type
ExprP var(int id);
ExprP batch();
ExprP local(int id, Scalar t);
ExprP load(int buffer, Scalar t, ExprP index);
ExprP unary(Op op, ExprP a);
ExprP binary(Op op, ExprP a, ExprP b);
ExprP select(ExprP c, ExprP a, ExprP b);
ExprP cast(ExprP a, Scalar t);

bool is_const(const ExprP& e);
// Integer value of a size expression at a batch size (constants, the batch, + - * /; else none).
std::optional<int64_t> eval_size(const ExprP& e, int64_t batch);
bool same_expr(const ExprP& a, const ExprP& b);
bool mentions_local(const ExprP& e, int local);  // e reads that local
bool mentions_var(const ExprP& e, int var);      // e depends on that loop variable
bool mentions_load(const ExprP& e, int buffer);  // e reads that buffer
std::string print_expr(const ExprP& e, const struct Program* prog = nullptr, const struct Kernel* k = nullptr);

enum class StmtKind : uint8_t { Loop, Store, Assign };

struct Stmt {
  StmtKind kind = StmtKind::Store;
  // Loop: for var in [lo, hi): body. A parallel loop must be top-level in its
  // kernel; its iterations write disjoint memory.
  int var = -1;
  ExprP lo, hi;
  bool parallel = false;
  std::vector<Stmt> body;
  // Store: buffer[index] = value.  Assign: local = value.
  int target = -1;  // buffer id (Store) or local id (Assign)
  ExprP index, value;
};

Stmt loop_stmt(int var, ExprP lo, ExprP hi, std::vector<Stmt> body, bool parallel = false);
Stmt store_stmt(int buffer, ExprP index, ExprP value);
Stmt assign_stmt(int local, ExprP value);

// C = op(A) @ op(B) (+ C when accumulate), row-major with leading dimensions.
// M and K may depend on the batch size; N never does (the matmul shape rule).
// op(A) read through a convolution's windows instead of from a matrix
// (implicit im2col): A is an NHWC image [*, h, w, channels], row p of op(A) is
// output position p = (image * oh + y) * ow + x, column (ky * kw + kx) * cg + ch
// the tap's channel ch (of cg per group: a product's A starts at its group's
// first channel), zero where the tap lies in the padding. Not with trans_a.
struct GemmWindows {
  int64_t h = 0, w = 0, channels = 0, cg = 0;  // the image; channels per group
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  int64_t pad_top = 0, pad_left = 0;  // may be negative (a crop)
  int64_t oh = 0, ow = 0;             // output positions per image
  int64_t depth() const { return kh * kw * cg; }
  // A name for the packing helper of this geometry: "h32w32c16g16_k3x3_s1x1_d1x1_p1x1_o32x32".
  std::string key() const;
};

struct GemmSpec {
  ExprP m, n, k;
  int a = -1, b = -1, c = -1;     // buffer ids
  int64_t lda = 0, ldb = 0, ldc = 0;
  bool trans_a = false, trans_b = false;
  bool accumulate = false;
  int scratch = -1;               // arena buffer for packing op(B), sized for the maximum batch
  // A batch of independent products (batched matmul): `batch` of them (null:
  // one), operand i of product b at its buffer + b * stride (0: one matrix
  // shared by every product). C's products are contiguous (stride_c = M * ldc).
  ExprP batch;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  bool batched() const { return batch && !(batch->kind == ExprKind::Const && batch->ival == 1); }
  // With an epilogue (the kernel's body, see compiler/lower/gemm_epilogue.h):
  // the local holding the product of the element the epilogue computes.
  int epilogue_value = -1;
  // A is an image read through convolution windows (absent: A is a matrix, lda apart).
  std::shared_ptr<const GemmWindows> windows;
  // B is an image read through convolution windows: op(B) [positions, taps x
  // channels] is its window matrix (a filter gradient's dy^T @ windows), not with trans_b.
  std::shared_ptr<const GemmWindows> windows_b;
  // op(B) packed once per parameter load (B holds a param, a constant or a
  // value of them alone, in an entry that writes no persistent tensor): its
  // NR-column panels, in depth blocks, live in `packed_b` (State), written by
  // a kernel of its own (`packs_b`) that runs when the params change; the
  // product reads them in place of packing B on every call (gemm_driver.cpp).
  int packed_b = -1;
  bool packs_b = false;  // this kernel only packs op(B) into packed_b (no A, no C)
  // Causal structure, rows and columns counted within each product (from
  // OpDef::zero_above_diagonal / reads_on_and_below_diagonal): op(A) is zero
  // past its diagonal (lower: k > row; upper: k < row), so each tile's terms
  // there are skipped; C is read on and below its diagonal alone, so tiles
  // wholly above it are never computed (their C is left as it was).
  enum class Triangle : uint8_t { none, lower, upper };
  Triangle a_triangle = Triangle::none;
  bool c_lower_read = false;
};

enum class KernelKind : uint8_t { Loops, Gemm };

struct LocalDecl {
  std::string name;
  Scalar type;
};

struct Kernel {
  KernelKind kind = KernelKind::Loops;
  std::string name;       // k<index>_<node name>, a valid C identifier
  std::string node;       // the graph node it computes
  std::string origin;     // the JSON node it came from
  std::string comment;    // what it computes, printed above it
  std::vector<Stmt> body;             // Loops; for a Gemm, its epilogue (if any)
  GemmSpec gemm;                      // Gemm
  std::vector<std::string> var_names; // loop variables by id
  std::vector<LocalDecl> locals;      // locals by id
  std::vector<int> writes;            // buffers the kernel writes (for --check-numerics and printing)
  // Computes values of params alone into persistent buffers: its entry runs
  // it only when the params changed since (see Entry::prepared_epoch).
  bool once_per_params = false;
  // A Loops kernel that finishes its output row by row (compiler/lower/
  // row_epilogue.h): in the body of loop `loop_var`, before its statement
  // `at`, row `row` of `buffer` (elements [row * cols, row * cols + cols)) has
  // its final value and no later statement writes it. Every row is visited once.
  struct RowSite {
    int buffer = -1, loop_var = -1;
    size_t at = 0;
    ExprP row;
    int64_t cols = 0;
  };
  std::optional<RowSite> row_site;
};

enum class Storage : uint8_t {
  Arena,     // ctx->arena + offset
  Param,     // ctx->params + offset (role param)
  State,     // ctx->state + offset (role state)
  Input,     // input slot `offset` of the running entry (see Entry::input_slot)
  Output,    // outputs[index] of the running entry
  Constant,  // data embedded in the code
};
std::string_view storage_name(Storage s);

struct Buffer {
  std::string name;        // node name (or a purpose, for scratch and outputs)
  DType dtype = DType::f32;
  Shape shape;             // may hold the open batch dimension
  Storage storage = Storage::Arena;
  int64_t offset = 0;      // bytes into its storage (Arena, Param, State); index for Input/Output
  std::vector<double> data;// Constant
  NodeId node = kNoNode;   // the node whose value it holds (within its entry's graph), if any
  // A view (reshape, squeeze, a contiguous slice): no bytes of its own, it is
  // buffer `view_of`'s elements from `view_offset` on. `view_of` is never a
  // view itself; the storage is the base's.
  int view_of = -1;
  int64_t view_offset = 0;
  bool is_view() const { return view_of >= 0; }
  int64_t bytes(int64_t batch) const;   // size with the open dimension bound to `batch`
};

struct EntryTensor {
  std::string name;
  DType dtype;
  Shape shape;
  int buffer = -1;
};

struct Entry {
  std::string name;                    // init, predict, eval_step, train_step
  const Graph* graph = nullptr;        // the graph its kernels were lowered from (not owned)
  std::vector<EntryTensor> inputs, outputs;
  // Kernels read step inputs by slots shared with the entries of the same
  // graph: input i of this entry fills slot input_slot[i] of slot_count.
  std::vector<int> input_slot;
  int slot_count = 0;
  std::vector<int> kernels;            // indexes into Program::kernels, in execution order
  std::vector<int> arena_buffers;      // the arena buffers it uses (placed by plan_memory)
  int64_t arena_bytes = 0;
  // Persistent tensors written back at the end of the step: param <- value by
  // `kernel` (a copy; plan_memory may turn it into an in-place write).
  struct Update {
    int param = -1, value = -1, kernel = -1;
  };
  std::vector<Update> updates;
  std::vector<int> written;  // every persistent buffer the entry updates (copied or in place)
  // Entries that read values of params alone (kernels once_per_params) run
  // those kernels first, and only when kiln_context::params_epoch differs
  // from this State buffer (i64), which then takes it. Entries that write
  // persistent tensors (init, train_step) bump the epoch.
  int prepared_epoch = -1;
  bool writes_persistent = false;
  // Empty when each output row reads only the same row of the inputs (and
  // the entry writes no persistent tensor): a batch may then run in slices
  // (compiler/passes/batch_rows.h); else why not.
  std::string rows_mixed = "not analysed";
};

struct Program {
  std::string name;
  int64_t max_batch = 1;
  std::vector<Buffer> buffers;
  std::vector<Kernel> kernels;
  std::vector<Entry> entries;
  std::vector<int> persistent;         // Param and State buffers, in declaration order
  int64_t arena_bytes = 0;             // max over entries: entries run one at a time
  int64_t intermediate_bytes = 0;      // the arena without reuse: every arena buffer of a graph, summed
  int64_t param_bytes = 0, state_bytes = 0;
  const Entry* entry(std::string_view name) const;
  bool viewed(int buffer) const;  // some buffer is a view of it
};

std::string print_kernel(const Program& p, const Kernel& k);
std::string print_program(const Program& p);

}  // namespace kiln::lower
