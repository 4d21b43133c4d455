// Layout ops: reshape, transpose, broadcast. They move or repeat elements and
// compute nothing.
#include <algorithm>

#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"

namespace kiln {

void register_layout_ops(OpRegistry& r) {
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
         }});

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
         }});

  r.add({.name = "broadcast", .family = "layout", .summary = "repeat x to a larger shape (numpy rules)", .inputs = {"x"},
         .attrs = {{"shape", AttrKind::Shape, true, nullptr, "target dimensions (-1 = the open batch dimension)"}},
         .shape_rule = "x: S -> shape, where S broadcasts to shape",
         .infer = [](const InferCtx& c) {
           Shape to = c.ints("shape");
           Shape got = broadcast_shapes(c.in[0].shape, to);
           if (got != to)
             throw OpError("cannot broadcast " + shape_str(c.in[0].shape) + " to " + shape_str(to));
           return TensorType{c.in[0].dtype, to};
         }});
}

// ---- gradient rules (compiler/autodiff calls them) ----
void register_layout_gradients(OpRegistry& r) {
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
void register_layout_reference(OpRegistry& r) {
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
void register_layout_lowering(OpRegistry& r) {
  using namespace lower;
  // Same elements in the same row-major order: a flat copy.
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

}  // namespace kiln
