// Layout ops: reshape, transpose, broadcast. They move or repeat elements and
// compute nothing.
#include <algorithm>

#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

static std::vector<int64_t> perm_of(const Node& n) { return n.attrs.at("perm").get<std::vector<int64_t>>(); }

static bool is_identity_perm(const std::vector<int64_t>& perm) {
  for (size_t i = 0; i < perm.size(); ++i)
    if (perm[i] != static_cast<int64_t>(i)) return false;
  return true;
}

// transpose(transpose(x, inner), outer) = transpose(x, inner[outer[i]]).
static void compose_transposes(Node& outer, const Node& inner) {
  auto outer_perm = perm_of(outer), inner_perm = perm_of(inner);
  std::vector<int64_t> composed(outer_perm.size());
  for (size_t i = 0; i < composed.size(); ++i) composed[i] = inner_perm[static_cast<size_t>(outer_perm[i])];
  outer.inputs[0] = inner.inputs[0];
  outer.attrs["perm"] = composed;
}

static void add_layout_ops(OpRegistry& r) {
  r.add({.name = "reshape", .family = "layout", .summary = "same elements, new shape (row-major)", .inputs = {"x"},
         .attrs = {{"shape", AttrKind::Shape, true, nullptr, "new dimensions; a leading -1 keeps the open batch dimension"}},
         .shape_rule = "x: S -> shape, prod(S) == prod(shape); -1 only as the first dim and only if x's first dim is open",
         .infer = [](const InferCtx& c) {
           Shape to = c.ints("shape");
           const Shape& from = c.in[0].shape;
           for (size_t i = 1; i < to.size(); ++i)
             if (to[i] == kOpenDim) throw OpError("only the first dimension of a reshape may be -1 (the open batch)");
           bool open_to = !to.empty() && to[0] == kOpenDim;
           bool open_from = !from.empty() && from[0] == kOpenDim;
           if (open_to != open_from)
             throw OpError("reshape " + shape_str(from) + " -> " + shape_str(to) +
                           ": the open batch dimension must stay first on both sides");
           Shape a(from.begin() + (open_from ? 1 : 0), from.end()), b(to.begin() + (open_to ? 1 : 0), to.end());
           if (numel(a) != numel(b))
             throw OpError("reshape " + shape_str(from) + " -> " + shape_str(to) + " changes the element count (" +
                           std::to_string(numel(a)) + " vs " + std::to_string(numel(b)) + " per batch item)");
           return TensorType{c.in[0].dtype, to};
         },
         .pattern = OpPattern::data_movement,
         .algebra = {.noop_if_type_unchanged = true,
                     .compose = [](Node& outer, const Node& inner) { outer.inputs[0] = inner.inputs[0]; }},
         // Row-major order is unchanged: the result is the input's bytes.
         .view = [](const Node&, const TensorType&) -> std::optional<int64_t> { return 0; },
         .samples = {{{{{-1, 3, 17}}}, {{"shape", {-1, 51}}}}, {{{{-1, 66}}}, {{"shape", {-1, 6, 11}}}},
                     {{{{33, 2}}}, {{"shape", {6, 11}}}}}});

  r.add({.name = "transpose", .family = "layout", .summary = "permute axes", .inputs = {"x"},
         .attrs = {{"perm", AttrKind::IntList, true, nullptr, "output axis i is input axis perm[i]", {}, 0, 63}},
         .shape_rule = "x: S -> [S[perm[0]], S[perm[1]], ...]",
         .infer = [](const InferCtx& c) {
           auto perm = c.ints("perm");
           if (static_cast<int>(perm.size()) != c.in[0].rank())
             throw OpError("perm has " + std::to_string(perm.size()) + " entries for a rank-" +
                           std::to_string(c.in[0].rank()) + " tensor");
           auto sorted = perm;
           std::sort(sorted.begin(), sorted.end());
           for (size_t i = 0; i < sorted.size(); ++i)
             if (sorted[i] != static_cast<int64_t>(i)) throw OpError("perm is not a permutation of 0..rank-1");
           Shape out;
           for (auto p : perm) out.push_back(c.in[0].shape[static_cast<size_t>(p)]);
           return TensorType{c.in[0].dtype, out};
         },
         .pattern = OpPattern::data_movement,
         .algebra = {.is_noop = [](const Node& n) { return is_identity_perm(perm_of(n)); },
                     .compose = compose_transposes,
                     .swaps_matrix_axes = [](const Node& n) { return perm_of(n) == std::vector<int64_t>{1, 0}; },
                     .permutation = perm_of},
         .samples = {{{{{-1, 17}}}, {{"perm", {1, 0}}}}, {{{{-1, 3, 5}}}, {{"perm", {0, 2, 1}}}}, {{{{3, 17, 5}}}, {{"perm", {1, 2, 0}}}}}});

  r.add({.name = "broadcast", .family = "layout", .summary = "repeat x to a larger shape (numpy rules)", .inputs = {"x"},
         .attrs = {{"shape", AttrKind::Shape, true, nullptr, "target dimensions (-1 = the open batch dimension)"}},
         .shape_rule = "x: S -> shape, where S broadcasts to shape",
         .infer = [](const InferCtx& c) {
           Shape to = c.ints("shape");
           Shape got = broadcast_shapes(c.in[0].shape, to);
           if (got != to)
             throw OpError("cannot broadcast " + shape_str(c.in[0].shape) + " to " + shape_str(to));
           return TensorType{c.in[0].dtype, to};
         },
         .pattern = OpPattern::broadcast,
         .algebra = {.noop_if_type_unchanged = true},
         .samples = {{{{{17}}}, {{"shape", {5, 17}}}}, {{{{3, 1}}}, {{"shape", {2, 3, 33}}}}}});
}

// ---- gradient rules (compiler/autodiff calls them) ----
static void add_layout_gradients(OpRegistry& r) {
  r.find_mut("reshape")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    return {c.b.add("reshape", {c.dy}, {{"shape", c.type(c.x[0]).shape}})};
  };
  // The inverse permutation: input axis perm[i] came from output axis i.
  r.find_mut("transpose")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    auto perm = c.graph().node(c.node).attrs.at("perm").get<std::vector<int64_t>>();
    std::vector<int64_t> inverse(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
    return {c.b.add("transpose", {c.dy}, {{"perm", inverse}})};
  };
  r.find_mut("broadcast")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    return {c.b.reduce_to_shape(c.dy, c.type(c.x[0]).shape)};
  };
}

// ---- reference kernels (compiler/interp runs them) ----
static void add_layout_reference(OpRegistry& r) {
  r.find_mut("reshape")->reference = [](interp::RefCtx& c) {
    auto to = c.concrete(c.attrs.at("shape").get<Shape>());  // a leading -1 is the run-time batch
    c.out = *c.in[0];
    c.out.reshape(to);
  };
  r.find_mut("transpose")->reference = [](interp::RefCtx& c) {
    auto perm = c.attrs.at("perm").get<std::vector<size_t>>();
    c.out = xt::transpose(*c.in[0], perm);
  };
  r.find_mut("broadcast")->reference = [](interp::RefCtx& c) {
    c.out = xt::broadcast(*c.in[0], c.concrete(c.attrs.at("shape").get<Shape>()));
  };
}

// ---- lowering to loop IR (compiler/lower) ----
static void add_layout_lowering(OpRegistry& r) {
  using namespace lower;
  // Same elements in the same row-major order: a flat copy. Only where the
  // program cannot alias the input (lower_program makes reshapes views).
  r.find_mut("reshape")->lower = [](LowerCtx& c) {
    auto k = c.kernel("reshape " + shape_str(c.in[0].shape) + " -> " + shape_str(c.out.shape) + " (copy)");
    bool parallel = numel(c.out.shape, c.max_batch()) >= kParallelMinElements;
    k.loop("i", 0, c.out.size(), [&](E i) { k.store(c.out, i, k.load(c.in[0], i)); }, parallel);
  };
  r.find_mut("transpose")->lower = [](LowerCtx& c) {
    auto perm = c.attrs.at("perm").get<std::vector<int64_t>>();
    auto k = c.kernel("transpose " + c.attrs.at("perm").dump());
    bool parallel = numel(c.out.shape, c.max_batch()) >= kParallelMinElements;
    k.loops(c.out.shape, [&](const std::vector<E>& o) {
      std::vector<E> src(o.size());
      for (size_t i = 0; i < perm.size(); ++i) src[static_cast<size_t>(perm[i])] = o[i];
      k.store(c.out, c.out.offset(o), k.load(c.in[0], c.in[0].offset(src)));
    }, parallel);
  };
  r.find_mut("broadcast")->lower = [](LowerCtx& c) {
    c.elementwise([](const std::vector<E>& v) { return v[0]; },
                  "broadcast " + shape_str(c.in[0].shape) + " -> " + shape_str(c.out.shape));
  };
}

// One registration for the family: its ops, then their gradients, reference
// kernels and lowerings.
void register_layout_family(OpRegistry& r) {
  add_layout_ops(r);
  add_layout_gradients(r);
  add_layout_reference(r);
  add_layout_lowering(r);
  r.find_mut("reshape")->mixes_along = mixes_along_reshape;
  r.find_mut("transpose")->mixes_along = mixes_along_nothing;  // moves the batch axis, keeps rows apart
}

}  // namespace kiln
