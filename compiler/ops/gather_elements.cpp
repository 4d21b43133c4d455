// gather_elements (ONNX GatherElements, torch.gather): each output element
// reads data at its own position with the index along one axis replaced by
// the indices tensor's value there; and scatter_elements_add, its gradient
// (each update added where gather_elements read it from, in order).
#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/movement.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

namespace {

int axis_of(const Attrs& a, int rank) { return normalize_axis(a.at("axis").get<int64_t>(), rank); }

// indices has data's rank and fits inside it on every axis but `axis`.
void check_positions(const TensorType& data, const TensorType& indices, int axis, const char* what) {
  if (indices.dtype != DType::i32 && indices.dtype != DType::i64)
    throw OpError("indices must be i32 or i64, got " + type_str(indices));
  if (indices.rank() != data.rank())
    throw OpError(std::string(what) + ": indices " + type_str(indices) + " must have data's rank " + std::to_string(data.rank()));
  for (int i = 0; i < data.rank(); ++i)
    if (i != axis && indices.shape[static_cast<size_t>(i)] != data.shape[static_cast<size_t>(i)] &&
        !(indices.shape[static_cast<size_t>(i)] != kOpenDim && data.shape[static_cast<size_t>(i)] != kOpenDim &&
          indices.shape[static_cast<size_t>(i)] <= data.shape[static_cast<size_t>(i)]))
      throw OpError(std::string(what) + ": indices " + shape_str(indices.shape) + " exceed data " + shape_str(data.shape) +
                    " on axis " + std::to_string(i));
  if (data.shape[static_cast<size_t>(axis)] == kOpenDim) throw OpError("cannot index along the open batch dimension");
}

// Index along `axis` for element (row-major multi-index `idx` of indices): wrapped, or -1 when outside.
int64_t wrapped(double raw, int64_t d) {
  int64_t i = static_cast<int64_t>(raw);
  if (i < 0) i += d;
  return i >= 0 && i < d ? i : -1;
}

template <class F>
void for_each_position(const interp::Array& indices, const interp::Array& data, int axis, F f) {
  const size_t rank = indices.dimension();
  std::vector<size_t> idx(rank, 0);
  for (size_t flat = 0; flat < indices.size(); ++flat) {
    int64_t i = wrapped(indices.flat(flat), static_cast<int64_t>(data.shape()[static_cast<size_t>(axis)]));
    size_t at = 0;
    for (size_t d = 0; d < rank; ++d) at = at * data.shape()[d] + (static_cast<int>(d) == axis ? static_cast<size_t>(std::max<int64_t>(i, 0)) : idx[d]);
    f(flat, i >= 0, at);
    for (size_t d = rank; d-- > 0;) {
      if (++idx[d] < indices.shape()[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace

static void add_gather_elements_ops(OpRegistry& r) {
  r.add({.name = "gather_elements", .family = "gather_elements",
         .summary = "data at each position of indices, the index along axis taken from indices (negative: from the end; "
                    "outside: zero)",
         .inputs = {"data", "indices"},
         .attrs = {{"axis", AttrKind::Int, false, 0, "the axis indexed", {}, -64, 63}},
         .shape_rule = "data: D, indices: I (rank of D, within D off the axis) -> I",
         .infer = [](const InferCtx& c) {
           const int ax = axis_of(c.attrs, c.in[0].rank());
           check_positions(c.in[0], c.in[1], ax, "gather_elements");
           return TensorType{c.in[0].dtype, c.in[1].shape};
         },
         .pattern = OpPattern::data_movement, .index_bound = indices_along_axis_bound,
         .samples = {{{{{-1, 9}}, {{-1, 5}, -9, 9, DType::i32}}, {{"axis", 1}}},
                     {{{{7, 3, 4}}, {{5, 3, 2}, 0, 7, DType::i64}}}}});
  r.add({.name = "scatter_elements_add", .family = "gather_elements",
         .summary = "data plus each update added where gather_elements would read it (its gradient; repeats add up, in order)",
         .inputs = {"data", "indices", "updates"},
         .attrs = {{"axis", AttrKind::Int, false, 0, "the axis indexed", {}, -64, 63}},
         .shape_rule = "data: D, indices: I, updates: I -> D",
         .infer = [](const InferCtx& c) {
           const int ax = axis_of(c.attrs, c.in[0].rank());
           check_positions(c.in[0], c.in[1], ax, "scatter_elements_add");
           if (c.in[2].shape != c.in[1].shape || c.in[2].dtype != c.in[0].dtype)
             throw OpError("updates " + type_str(c.in[2]) + " must have indices' shape and data's dtype");
           return c.in[0];
         },
         .pattern = OpPattern::data_movement, .index_bound = indices_along_axis_bound,
         .samples = {{{{{-1, 9}}, {{-1, 5}, -9, 9, DType::i32}, {{-1, 5}}}, {{"axis", 1}}},
                     {{{{7, 3, 4}}, {{5, 3, 2}, 0, 7, DType::i64}, {{5, 3, 2}}}}}});
}

static void add_gather_elements_gradients(OpRegistry& r) {
  r.find_mut("gather_elements")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    const Attrs a = c.graph().node(c.node).attrs;
    NodeId zeros = c.b.add("broadcast", {c.b.scalar_like(0.0, c.dy)}, {{"shape", c.type(c.x[0]).shape}});
    return {c.b.add("scatter_elements_add", {zeros, c.x[1], c.dy}, {{"axis", a.at("axis")}}), kNoNode};
  };
  r.find_mut("scatter_elements_add")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    const Attrs a = c.graph().node(c.node).attrs;
    return {c.dy, kNoNode, c.b.add("gather_elements", {c.dy, c.x[1]}, {{"axis", a.at("axis")}})};
  };
}

static void add_gather_elements_reference(OpRegistry& r) {
  r.find_mut("gather_elements")->reference = [](interp::RefCtx& c) {
    const interp::Array &data = *c.in[0], &indices = *c.in[1];
    c.out = interp::Array::from_shape(indices.shape());
    for_each_position(indices, data, axis_of(c.attrs, static_cast<int>(data.dimension())),
                      [&](size_t flat, bool inside, size_t at) { c.out.flat(flat) = inside ? data.flat(at) : 0.0; });
  };
  r.find_mut("scatter_elements_add")->reference = [](interp::RefCtx& c) {
    const interp::Array &data = *c.in[0], &indices = *c.in[1], &updates = *c.in[2];
    c.out = data;
    for_each_position(indices, data, axis_of(c.attrs, static_cast<int>(data.dimension())),
                      [&](size_t flat, bool inside, size_t at) {
                        if (inside) c.out.flat(at) += updates.flat(flat);
                      });
  };
}

// One loop over the indices' positions: the data position they name, wrapped
// and checked (outside: read as zero, or the update dropped).
static void add_gather_elements_lowering(OpRegistry& r) {
  using namespace lower;
  auto position = [](KernelBuilder& k, const BufRef& data, const BufRef& indices, const std::vector<E>& idx, int axis,
                     E& valid) {
    const int64_t d = data.shape[static_cast<size_t>(axis)];
    E raw = cast(k.load(indices, indices.offset(idx)), Scalar::i64);
    E i = select(raw < E(0), raw + E(d), raw);
    valid = (i >= E(0)) && (i < E(d));
    std::vector<E> at = idx;
    at[static_cast<size_t>(axis)] = select(valid, i, E(0));
    return data.offset(at);
  };
  r.find_mut("gather_elements")->lower = [position](LowerCtx& c) {
    const int axis = axis_of(c.attrs, c.in[0].rank());
    auto k = c.kernel("gather_elements along axis " + std::to_string(axis));
    k.loops(c.in[1].shape, [&](const std::vector<E>& idx) {
      E valid;
      E v = k.load(c.in[0], position(k, c.in[0], c.in[1], idx, axis, valid));
      k.store(c.out, c.out.offset(idx), select(valid, v, lit(0, v.type())));
    }, numel(c.out.shape, c.max_batch()) >= kParallelMinElements);
  };
  r.find_mut("scatter_elements_add")->lower = [position](LowerCtx& c) {
    const int axis = axis_of(c.attrs, c.in[0].rank());
    auto k = c.kernel("scatter_elements_add along axis " + std::to_string(axis));
    k.loop("i", 0, c.out.size(), [&](E i) { k.store(c.out, i, k.load(c.in[0], i)); },
           numel(c.out.shape, c.max_batch()) >= kParallelMinElements);
    k.loops(c.in[1].shape, [&](const std::vector<E>& idx) {
      E valid;
      E at = position(k, c.out, c.in[1], idx, axis, valid);
      E add = k.load(c.in[2], c.in[2].offset(idx));
      k.store(c.out, at, k.load(c.out, at) + select(valid, add, lit(0, add.type())));
    });
  };
}

void register_gather_elements_family(OpRegistry& r) {
  add_gather_elements_ops(r);
  add_gather_elements_gradients(r);
  add_gather_elements_reference(r);
  add_gather_elements_lowering(r);
  for (const char* name : {"gather_elements", "scatter_elements_add"}) r.find_mut(name)->mixes_along = mixes_along_attr("axis");
  r.find_mut("gather_elements")->mixing_inputs = 1;  // the data; an index is read at its output's own position
}

}  // namespace kiln
