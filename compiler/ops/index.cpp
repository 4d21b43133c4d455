// Index ops: one_hot (labels -> rows of a identity) and argmax. Neither has a
// gradient: they stop it explicitly.
#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

static void add_index_ops(OpRegistry& r) {
  r.add({.name = "one_hot", .family = "index",
         .summary = "integer labels -> one-hot rows; a label outside [0, depth) gives a row of zeros",
         .inputs = {"indices"},
         .attrs = {{"depth", AttrKind::Int, true, nullptr, "number of classes", {}, 1, 1 << 24},
                   {"dtype", AttrKind::Enum, false, "f32", "result type", {"f32", "f64"}},
                   {"axis", AttrKind::Int, false, -1, "where the classes axis goes in the result (-1: last)", {}, -64, 63}},
         .shape_rule = "indices: i32[S] -> dtype[S with depth inserted at axis]",
         .infer = [](const InferCtx& c) {
           if (c.in[0].dtype != DType::i32 && c.in[0].dtype != DType::i64)
             throw OpError("one_hot needs integer labels, got " + type_str(c.in[0]));
           Shape s = c.in[0].shape;
           const int axis = normalize_axis(c.i("axis"), c.in[0].rank() + 1);
           s.insert(s.begin() + axis, c.i("depth"));
           for (size_t i = 1; i < s.size(); ++i)
             if (s[i] == kOpenDim) throw OpError("the classes axis cannot go before the open batch dimension");
           return TensorType{*parse_dtype(c.s("dtype")), s};
         },
         .no_grad = true,
         .pattern = OpPattern::data_movement,
         .index_bound = [](const Graph&, const Node& n, int) { return n.attrs.at("depth").get<int64_t>(); },
         .samples = {{{{{-1}, 0, 5, DType::i32}}, {{"depth", 5}}}, {{{{17}, 0, 33, DType::i64}}, {{"depth", 33}, {"dtype", "f64"}}},
                     {{{{-1, 3}, 0, 4, DType::i32}}, {{"depth", 4}, {"axis", 1}}}}});

  r.add({.name = "argmax", .family = "index", .summary = "index of the first maximum along an axis", .inputs = {"x"},
         .attrs = {{"axis", AttrKind::Int, false, -1, "the axis (negative counts from the end)", {}, -64, 63}},
         .shape_rule = "x: S -> i32[S without axis]",
         .infer = [](const InferCtx& c) {
           if (c.in[0].dtype == DType::boolean) throw OpError("argmax of a bool tensor; cast it first");
           int ax = normalize_axis(c.i("axis"), c.in[0].rank());
           Shape s = c.in[0].shape;
           s.erase(s.begin() + ax);
           return TensorType{DType::i32, s};
         },
         .no_grad = true,
         .pattern = OpPattern::reduction,
         .kinks = Kinks::value_steps,
         .samples = {{{{{-1, 17}}}}, {{{{3, 33, 5}}}, {{"axis", 1}}}}});
}

// ---- gradient rules (compiler/autodiff calls them) ----
static void add_index_gradients(OpRegistry& r) {
}

// ---- reference kernels (compiler/interp runs them) ----
static void add_index_reference(OpRegistry& r) {
  // Labels viewed as [outer, inner] around the classes axis: label (o, i)
  // marks out[o, label, i]; out of range, its line stays zero.
  r.find_mut("one_hot")->reference = [](interp::RefCtx& c) {
    const interp::Array& labels = *c.in[0];
    size_t depth = c.attrs.at("depth").get<size_t>();
    const size_t axis = static_cast<size_t>(normalize_axis(c.attrs.at("axis").get<int64_t>(), static_cast<int>(labels.dimension()) + 1));
    std::vector<size_t> shape(labels.shape().begin(), labels.shape().end());
    size_t inner = 1;
    for (size_t i = axis; i < shape.size(); ++i) inner *= shape[i];
    shape.insert(shape.begin() + static_cast<std::ptrdiff_t>(axis), depth);
    c.out = interp::Array::from_shape(shape);
    c.out.fill(0.0);
    double* po = c.out.data();
    for (size_t at = 0; at < labels.size(); ++at) {
      double label = labels.flat(at);
      if (label >= 0 && label < static_cast<double>(depth))
        po[(at / inner * depth + static_cast<size_t>(label)) * inner + at % inner] = 1.0;
    }
  };
  r.find_mut("argmax")->reference = [](interp::RefCtx& c) {
    const interp::Array& x = *c.in[0];
    int rank = static_cast<int>(x.dimension());
    size_t axis = static_cast<size_t>(normalize_axis(c.attrs.at("axis").get<int64_t>(), rank));
    size_t outer = 1, len = x.shape()[axis], inner = 1;
    for (size_t i = 0; i < axis; ++i) outer *= x.shape()[i];
    for (size_t i = axis + 1; i < x.dimension(); ++i) inner *= x.shape()[i];
    std::vector<size_t> shape(x.shape().begin(), x.shape().end());
    shape.erase(shape.begin() + static_cast<std::ptrdiff_t>(axis));
    c.out = interp::Array::from_shape(shape);
    const double* px = x.data();
    double* po = c.out.data();
    for (size_t o = 0; o < outer; ++o)
      for (size_t i = 0; i < inner; ++i) {
        size_t best = 0;  // the first maximum (or first NaN) wins
        for (size_t k = 1; k < len; ++k)
          if (interp::beats_first_max(px[(o * len + k) * inner + i], px[(o * len + best) * inner + i])) best = k;
        po[o * inner + i] = static_cast<double>(best);
      }
  };
}

// ---- lowering to loop IR (compiler/lower) ----
static void add_index_lowering(OpRegistry& r) {
  using namespace lower;
  // Per label, its line of `depth` outputs; the line is strided when the
  // classes axis is not last ([outer, depth, inner] around it).
  r.find_mut("one_hot")->lower = [](LowerCtx& c) {
    int64_t depth = c.attrs.at("depth");
    const int axis = normalize_axis(c.attrs.at("axis").get<int64_t>(), c.in[0].rank() + 1);
    E inner = 1;
    for (int d = axis; d < c.in[0].rank(); ++d) inner = inner * c.in[0].dim(d);
    auto k = c.kernel("one_hot depth " + std::to_string(depth) + (axis == c.in[0].rank() ? "" : " at axis " + std::to_string(axis)));
    Scalar t = c.out.scalar();
    k.loop("i", 0, c.in[0].size(), [&](E i) {
      E label = k.let("label", cast(k.load(c.in[0], i), Scalar::i64));
      E first = axis == c.in[0].rank() ? i * E(depth) : (i / inner) * E(depth) * inner + i % inner;
      k.loop("j", 0, depth, [&](E j) {
        k.store(c.out, first + j * inner, select(label == j, lit(1, t), lit(0, t)));
      });
    });
  };
  // x viewed as [outer, A, inner]: the first maximum along A.
  r.find_mut("argmax")->lower = [](LowerCtx& c) {
    const BufRef& x = c.in[0];
    int axis = normalize_axis(c.attrs.at("axis").get<int64_t>(), x.rank());
    E outer = 1, inner = 1;
    for (int d = 0; d < axis; ++d) outer = outer * x.dim(d);
    for (int d = axis + 1; d < x.rank(); ++d) inner = inner * x.dim(d);
    E len = x.dim(axis);
    auto k = c.kernel("argmax over axis " + std::to_string(axis));
    k.loop("o", 0, outer, [&](E o) {
      k.loop("i", 0, inner, [&](E i) {
        E base = o * len * inner + i;
        E best = k.let("best", k.load(x, base));
        E at = k.let("at", E(0));
        k.loop("j", 1, len, [&](E j) {
          E v = k.let("v", k.load(x, base + j * inner));
          // Strictly larger, or the first NaN (v != v) while best is not one: numpy's argmax.
          E better = logical_or(v > best, (v != v) && (best == best));
          k.set(at, select(better, j, at));
          k.set(best, select(better, v, best));
        });
        k.store(c.out, o * inner + i, cast(at, Scalar::i32));
      });
    });
  };
}

// One registration for the family: its ops, then their gradients, reference
// kernels and lowerings.
void register_index_family(OpRegistry& r) {
  add_index_ops(r);
  add_index_gradients(r);
  add_index_reference(r);
  add_index_lowering(r);
  r.find_mut("one_hot")->mixes_along = mixes_along_nothing;
  r.find_mut("argmax")->mixes_along = mixes_along_attr("axis");
}

}  // namespace kiln
