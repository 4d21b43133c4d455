#pragma once
// The op registry: one OpDef per op. Each op family's file under compiler/ops/
// fills in its ops' attributes, shape rule, gradient rule, reference kernel and
// lowering, so everything an op means lives in one place.
#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "compiler/ir/graph.h"

namespace kiln {

class GraphBuilder;
namespace interp { struct RefCtx; }
namespace lower { struct LowerCtx; }

// A problem with one op application (bad attribute, mismatched shapes, ...).
// The frontend adds the JSON path and node name.
struct OpError : std::runtime_error {
  using std::runtime_error::runtime_error;
  // When attributes are at fault: one (attribute, problem) per fault, so each
  // can be reported at its own JSON path.
  std::vector<std::pair<std::string, std::string>> attr_problems;
};

enum class AttrKind { Int, Float, Bool, String, IntList, FloatList, Shape, Tensor, Enum, Object, Json };
std::string_view attr_kind_name(AttrKind k);

struct AttrSpec {
  std::string name;
  AttrKind kind;
  bool required = false;
  nlohmann::json default_value = nullptr;  // used when absent and not required
  std::string doc;
  std::vector<std::string> choices = {};   // for Enum
  double min = -1e300, max = 1e300;        // for Int/Float and list elements
};

struct InferCtx {
  std::span<const TensorType> in;
  const Attrs& attrs;  // already checked and defaulted against the AttrSpecs
  int64_t i(const char* name) const { return attrs.at(name).get<int64_t>(); }
  double f(const char* name) const { return attrs.at(name).get<double>(); }
  bool b(const char* name) const { return attrs.at(name).get<bool>(); }
  std::string s(const char* name) const { return attrs.at(name).get<std::string>(); }
  std::vector<int64_t> ints(const char* name) const { return attrs.at(name).get<std::vector<int64_t>>(); }
};

// Gradient rule: builds the vector-Jacobian product as graph nodes.
struct GradCtx {
  GraphBuilder& b;
  NodeId node;                     // the forward node
  const std::vector<NodeId>& x;    // its inputs
  NodeId y;                        // == node
  NodeId dy;                       // cotangent of y
  const Graph& graph() const;
  TensorType type(NodeId id) const;
};

// What an op's loops look like. Passes ask this, never a list of op names:
// fusion puts elementwise ops in one loop, the algebra pass reads an operand
// a broadcast feeds straight into an elementwise user, gradcheck knows which
// ops it must steer clear of.
enum class OpPattern : uint8_t {
  unset,          // a registration that forgot to say (the registry test fails)
  source,         // a leaf or a fact about a shape: input, param, constant, dim_size
  elementwise,    // out[i] = f(in0[i], in1[i], ...), operands numpy-broadcast: fuses with its neighbours
  broadcast,      // replicates its input to a larger shape, no arithmetic
  reduction,      // combines elements along axes
  contraction,    // sums of products (matmul, convolution): a GEMM
  data_movement,  // moves or picks elements (transpose, reshape, gather, one_hot)
  opaque,         // several steps of its own (softmax, losses, pooling)
};
std::string_view pattern_name(OpPattern p);

// One GEMM as a BLAS library runs it: C[m, n] = op(A)[m, k] op(B)[k, n],
// `count` independent times. A contraction declares the GEMMs it amounts to
// (a convolution: its im2col GEMM per group), which is what a machine limit
// counts and what `kiln gemms` lists.
struct GemmShape {
  int64_t count = 1, m = 0, k = 0, n = 0;
  bool trans_a = false, trans_b = false;
  int64_t multiply_adds() const { return count * m * k * n; }
};

// Where an op is not smooth, for gradcheck, which must not difference across
// a step. `gradient_steps`: its gradient rule with dy = 1 is piecewise
// constant and changes exactly at the kinks (maximum, abs, max-pool, mod);
// `value_steps`: its value is piecewise constant (floor, sign, compare).
enum class Kinks : uint8_t { none, gradient_steps, value_steps };

// Algebraic facts the simplifier rewrites with.
struct OpAlgebra {
  bool commutative = false;
  bool associative = false;
  std::optional<double> left_identity, right_identity;  // e op x = x, x op e = x
  bool involution = false;                                // op(op(x)) = x
  bool noop_if_type_unchanged = false;                    // cast / broadcast / reshape to the input's own type
  std::function<bool(const Node&)> is_noop;               // e.g. transpose by the identity permutation
  // op(op(x)) as one op: rewrites `outer` to read `inner`'s input.
  std::function<void(Node& outer, const Node& inner)> compose;
  // The node only swaps the two axes of a matrix (a contraction can read its input transposed instead).
  std::function<bool(const Node&)> swaps_matrix_axes;
  // The node only permutes its input's axes: output axis i is input axis perm[i] (sink-transposes moves it).
  std::function<std::vector<int64_t>(const Node&)> permutation;
  // Contractions: the bool attribute that reads input k transposed ("" where none).
  std::vector<std::string> transpose_flags;
  // out = a * b elementwise: a contraction's per-channel scale may move into its weights.
  bool multiplies = false;
  // Contractions linear in an input whose last axis is the output's last axis
  // (conv2d's kernel, matmul's b): that input's index, else -1. Scaling the
  // output's channels is scaling that input's.
  std::function<int(const Node&)> scales_through_input;
  // The inputs the result is linear in, each on its own (matmul's a and b,
  // softmax_grad's dy): a scalar scale of the result may scale any one.
  std::vector<int> linear_inputs;
  // A sum over axes (reduce_sum): the axes of its input it sums, given the
  // input's rank. A factor the same along all of them moves out of the sum
  // (factor-sums: sum(x * c) -> sum(x) * c).
  std::function<std::vector<int>(const Node&, int input_rank)> summed_axes;
  // A unary elementwise f with f(x + y) = f(x) + f(y) (neg): sum(f(x)) -> f(sum(x)).
  bool additive = false;
  // A reduction over the axes of its "axes" attribute ("keepdims": kept as
  // size 1) whose result depends on which elements it reduces, not on their
  // order (rounding aside): the axes it reduces, given the input's rank.
  // sink-transposes reduces a transpose's input over the permuted axes instead.
  std::function<std::vector<int>(const Node&, int input_rank)> reduced_axes;
};

// A sample application for the registry sweep (JIT against the interpreter,
// gradcheck in f64): input shapes (-1 = the open batch dimension), dtypes and
// the range values are drawn from (chosen away from kinks), and attributes.
struct SampleInput {
  Shape shape;
  double lo = -1, hi = 1;
  DType dtype = DType::f32;
};
struct OpSample {
  std::vector<SampleInput> inputs;
  Attrs attrs = Attrs::object();
};

// Training and inference compute some ops differently (batch norm's batch
// statistics vs its running ones; dropout on vs off). Such an op is a
// placeholder in a model graph: specialize_mode() (compiler/passes/modes.h)
// replaces each of its nodes by the op's decomposition for the entry's mode.
enum class Mode : uint8_t { train, infer };
struct ModeCtx {
  Mode mode = Mode::infer;
  NodeId step = kNoNode;  // training: the i64 step counter (randomness draws by it)
  uint64_t seed = 0;      // the graph's seed
  // training: i64 scalar, the global index of the batch's first sample (a
  // data-parallel rank's shard starts there), so a sample draws the same
  // random numbers on any number of ranks; kNoNode: 0.
  NodeId first_sample = kNoNode;
};
// Returns the node computing `node`'s value in ctx.mode; in training it may
// add Graph::updates (running statistics) through the builder's graph.
using ModeFn = std::function<NodeId(GraphBuilder&, NodeId node, const ModeCtx&)>;

using InferFn = std::function<TensorType(const InferCtx&)>;
using ExpandFn = std::function<NodeId(GraphBuilder&, const std::vector<NodeId>&, const Attrs&)>;
// Returns one cotangent per input, kNoNode where no gradient flows.
using GradFn = std::function<std::vector<NodeId>(GradCtx&)>;
using ReferenceFn = std::function<void(interp::RefCtx&)>;
using LowerFn = std::function<void(lower::LowerCtx&)>;

struct OpDef {
  std::string name;
  std::string family;            // the file it lives in
  std::string summary;
  std::vector<std::string> inputs;
  bool variadic = false;         // inputs is then a single name repeated
  std::vector<AttrSpec> attrs;
  std::string shape_rule;        // for `kiln ops`, written next to the code that implements it
  InferFn infer;                 // primitives
  ExpandFn expand;               // composites: decomposition into other ops
  GradFn grad;                   // primitives that are differentiable
  bool no_grad = false;          // gradient stops here explicitly (argmax, one_hot, compare, ...)
  // Vector instructions per vector of elements in compiled code (elementwise
  // ops; 0: not counted, and never recomputed). The recompute pass computes a value again in each
  // reader's loop, instead of storing and loading it back, when the chain it
  // needs costs at most kRecomputeLaneOps.
  int lane_ops = 0;
  ReferenceFn reference;         // interp
  LowerFn lower;                 // loop IR

  // What the op is, for passes (see OpPattern, OpAlgebra, Kinks).
  OpPattern pattern = OpPattern::unset;
  bool pure = true;              // a function of its inputs alone: may be merged (CSE) and folded
  bool interface = false;        // fed or persistent (input, param): part of the graph's signature, never removed
  OpAlgebra algebra;
  Kinks kinks = Kinks::none;
  // Elementwise distance from this node's inputs to its nearest kink (built as
  // graph nodes); gradcheck redraws inputs to keep the smallest one large.
  std::function<NodeId(GraphBuilder&, const Node&)> kink_distance;
  // Integer input k must lie in [0, index_bound(node, k)) (0: not an index).
  std::function<int64_t(const Graph&, const Node&, int)> index_bound;
  // A value known from the input types alone (dim_size of a static dimension).
  std::function<std::optional<double>(const Graph&, const Node&)> fold_from_types;
  // A consumer whose loop reads each input once per element at a flat index
  // (a reduction, concat): it can compute its elementwise producers inline.
  bool inlines_elementwise_input = false;
  // Reads only its inputs' shapes, never their values (dim_size): no reason
  // for fusion to store an input it reads.
  bool reads_shape_only = false;
  // Ops whose result can be the input's own bytes: the element offset at
  // which the result's elements lie, in order, in the input (reshape, squeeze:
  // 0; a contiguous slice: its start), or nullopt where this node must copy.
  std::function<std::optional<int64_t>(const Node&, const TensorType& input)> view;
  // Contractions: the GEMMs computing this node, the open batch dimension as
  // `batch` (multiply_adds() below sums them; `kiln summary`, `kiln gemms`).
  std::function<std::vector<GemmShape>(const Graph&, const Node&, int64_t batch)> gemms;
  // Causal structure over the last two axes [.., rows i, columns j] (a causal
  // softmax and its gradient): the result is 0 wherever j > i, and input k is
  // read only where j <= i. A product reading such a value skips its zero
  // terms; one whose readers all read on and below the diagonal skips the
  // tiles above it (lowering asks, GemmSpec::triangle says).
  std::function<bool(const Graph&, const Node&)> zero_above_diagonal;
  std::function<bool(const Node&, int input)> reads_on_and_below_diagonal;
  // Ops that differ between training and inference (see Mode).
  ModeFn by_mode;
  // Inputs the training form updates itself (batch norm's running
  // statistics): a param there must not also be trained by the optimizer.
  std::vector<int> state_inputs;
  // May follow a layer as its `activation` (one float input, same shape out).
  bool activation = false;
  std::vector<OpSample> samples;
  // A primitive applied with attributes it does not compute itself (an NCHW
  // layout) is rewritten into other ops when the builder adds it: returns
  // kNoNode where the op applies as is.
  ExpandFn rewrite;
  // Its kernel's output is summed over the ranks of a data-parallel job
  // right after the kernel runs (by the runtime, between kernels); on one
  // process the kernel's own output is the sum.
  bool sums_over_ranks = false;
  // Batch slicing (compiler/passes/batch_rows.h): the axes of input 0 (and
  // of every input of its rank) along which an output element reads
  // elements at other positions: softmax's axis, a slice's axes, an image
  // window's every axis but the batch. Unset: none for elementwise,
  // broadcast and source ops; a reduction's reduced_axes; every axis for a
  // contraction; and for data movement and opaque ops "it does not say", so
  // a program reading such an op on the batch dimension is never sliced.
  // (Composites need none: they are expanded before anything asks.)
  std::function<std::vector<int>(const Graph&, const Node&)> mixes_along;
  // How many leading inputs mixes_along speaks for (-1: input 0 and every
  // input of its rank). The others are read only where their own position
  // maps to the output's: gather's indices, one per output row.
  int mixing_inputs = -1;

  bool composite() const { return static_cast<bool>(expand); }
};

class OpRegistry {
 public:
  static OpRegistry& get();      // every family registered on first use
  OpDef& add(OpDef def);
  const OpDef* find(std::string_view name) const;
  OpDef* find_mut(std::string_view name);
  const std::vector<OpDef>& all() const { return ops_; }
  std::vector<std::string> names() const;
 private:
  std::vector<OpDef> ops_;
};

// Checks `attrs` against the op's specs and fills in defaults. Throws OpError
// naming the attribute (and listing every problem found).
Attrs check_attrs(const OpDef& def, const Attrs& attrs);
Attrs check_attrs(const std::string& what, const std::vector<AttrSpec>& specs, const Attrs& attrs);

// "Did you mean" for unknown names: the closest candidate within a small edit distance.
std::string closest_name(std::string_view name, const std::vector<std::string>& candidates);

// The element offset of node `id`'s result in its input's bytes where its op
// declares it a view there (OpDef::view), else nullopt.
std::optional<int64_t> view_offset(const Graph& g, NodeId id);
// A constant whose every element is the same number: that number, else nullopt.
std::optional<double> uniform_value(const Node& n);
// The value is 0 wherever column j > row i of its last two axes (OpDef::zero_above_diagonal).
bool zero_above_diagonal(const Graph& g, NodeId id);

// OpDef::mixes_along rules: none; the axis (or axes: empty is every axis) an
// attribute names; every axis but 0 (a window over an image, a per-sample
// normalization).
std::vector<int> mixes_along_nothing(const Graph&, const Node&);
std::vector<int> every_axis(int rank);  // 0, 1, ..., rank - 1
std::function<std::vector<int>(const Graph&, const Node&)> mixes_along_attr(const char* attr);
std::vector<int> mixes_along_all_but_batch(const Graph& g, const Node& n);
// A reshape keeps rows apart where only size-1 axes
// precede the batch dimension in both shapes; else it mixes along every axis.
std::vector<int> mixes_along_reshape(const Graph& g, const Node& n);

// Shape helpers used by many shape rules.
Shape broadcast_shapes(const Shape& a, const Shape& b);  // throws OpError with both shapes
int normalize_axis(int64_t axis, int rank);              // throws OpError if out of range

// Each family file under compiler/ops/ defines one: its ops with everything
// they mean (attributes, shape rule, properties, samples, gradient, reference
// kernel, lowering). registry.cpp calls them all.
void register_source_family(OpRegistry&);
void register_elementwise_family(OpRegistry&);
void register_matmul_family(OpRegistry&);
void register_reduce_family(OpRegistry&);
void register_layout_family(OpRegistry&);
void register_conv_family(OpRegistry&);
void register_pool_family(OpRegistry&);
void register_index_family(OpRegistry&);
void register_activation_family(OpRegistry&);
void register_loss_family(OpRegistry&);
void register_math_family(OpRegistry&);
void register_movement_family(OpRegistry&);
void register_scan_family(OpRegistry&);
void register_avgpool_family(OpRegistry&);
void register_conv_forms_family(OpRegistry&);
void register_gather_elements_family(OpRegistry&);
void register_normalization_family(OpRegistry&);
void register_random_family(OpRegistry&);
void register_distributed_family(OpRegistry&);

// A node's multiply-adds through its op's GEMMs, the open batch dimension as
// `batch` (0 for an op that declares none).
int64_t multiply_adds(const Graph& g, const Node& n, int64_t batch = 1);

}  // namespace kiln
