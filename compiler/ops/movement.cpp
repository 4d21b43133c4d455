// Data movement: concat, slice, pad, gather and its gradient scatter_add,
// squeeze/unsqueeze, tile, flip, range. Each moves or picks elements without
// arithmetic: one loop over the output whose load index is computed. Their
// gradients, reference kernels and lowerings are in movement_kernels.cpp.
#include <algorithm>
#include <numeric>

#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/movement.h"
#include "compiler/ops/samples.h"

namespace kiln {

using lower::E;

// ---- slice: ONNX semantics (negative indices count from the end, ends clamp, negative steps walk back) ----
std::vector<SliceAxis> resolve_slice(const Attrs& a, const Shape& in) {
  const int rank = static_cast<int>(in.size());
  auto starts = a.at("starts").get<std::vector<int64_t>>(), ends = a.at("ends").get<std::vector<int64_t>>();
  std::vector<int64_t> axes = a.at("axes").get<std::vector<int64_t>>(), steps = a.at("steps").get<std::vector<int64_t>>();
  if (axes.empty()) axes.resize(starts.size()), std::iota(axes.begin(), axes.end(), 0);
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size()) {
    OpError e("starts, ends, axes and steps must have one entry each per sliced axis (got " +
              std::to_string(starts.size()) + ", " + std::to_string(ends.size()) + ", " + std::to_string(axes.size()) +
              ", " + std::to_string(steps.size()) + ")");
    e.attr_problems = {{"ends", e.what()}};
    throw e;
  }
  std::vector<SliceAxis> out(static_cast<size_t>(rank));
  for (int i = 0; i < rank; ++i) out[static_cast<size_t>(i)].count = in[static_cast<size_t>(i)];
  std::vector<bool> seen(static_cast<size_t>(rank), false);
  for (size_t j = 0; j < starts.size(); ++j) {
    int ax = normalize_axis(axes[j], rank);
    if (seen[static_cast<size_t>(ax)]) throw OpError("axis " + std::to_string(axes[j]) + " is sliced twice");
    seen[static_cast<size_t>(ax)] = true;
    const int64_t d = in[static_cast<size_t>(ax)], step = steps[j];
    if (d == kOpenDim) throw OpError("cannot slice along the open batch dimension (axis " + std::to_string(ax) + ")");
    if (step == 0) throw OpError("a slice step is 0 (axis " + std::to_string(ax) + ")");
    int64_t s = starts[j] < 0 ? starts[j] + d : starts[j], e = ends[j] < 0 ? ends[j] + d : ends[j];
    if (step > 0) s = std::clamp<int64_t>(s, 0, d), e = std::clamp<int64_t>(e, 0, d);
    else s = std::clamp<int64_t>(s, -1, d - 1), e = std::clamp<int64_t>(e, -1, d - 1);
    int64_t count = step > 0 ? (e - s + step - 1) / step : (s - e + (-step) - 1) / (-step);
    out[static_cast<size_t>(ax)] = {s, step, std::max<int64_t>(count, 0)};
  }
  return out;
}

namespace {

std::string dim_text(int64_t d) { return d == kOpenDim ? "?" : std::to_string(d); }

std::vector<AttrSpec> slice_attrs() {
  auto list = nlohmann::json::array();
  return {{"starts", AttrKind::IntList, true, nullptr, "first index per sliced axis (negative: from the end)"},
          {"ends", AttrKind::IntList, true, nullptr, "one past the last (clamped to the axis)"},
          {"axes", AttrKind::IntList, false, list, "the sliced axes (default 0, 1, ...)", {}, -64, 63},
          {"steps", AttrKind::IntList, false, list, "strides (negative walks back; default 1)"}};
}

std::vector<AttrSpec> pad_attrs() {
  return {{"pads", AttrKind::IntList, true, nullptr, "[before_0, ..., before_r-1, after_0, ..., after_r-1]"},
          {"mode", AttrKind::Enum, false, "constant", "what fills the border", {"constant", "reflect", "edge"}},
          {"value", AttrKind::Float, false, 0.0, "the fill of constant mode"}};
}

void check_indices(const TensorType& t, const char* what) {
  if (t.dtype != DType::i32 && t.dtype != DType::i64)
    throw OpError(std::string(what) + " must be i32 or i64, got " + type_str(t));
}

}  // namespace

// ---- pad ----
PadSpec pad_spec(const Attrs& a, const Shape& in) {
  PadSpec p;
  auto pads = a.at("pads").get<std::vector<int64_t>>();
  const size_t rank = in.size();
  auto fail = [&](const std::string& why) {
    OpError e("attribute 'pads' " + a.at("pads").dump() + ": " + why);
    e.attr_problems = {{"pads", e.what()}};
    throw e;
  };
  if (pads.size() != 2 * rank) fail("needs 2 x rank = " + std::to_string(2 * rank) + " entries (all befores, then all afters)");
  p.before.assign(pads.begin(), pads.begin() + static_cast<long>(rank));
  p.after.assign(pads.begin() + static_cast<long>(rank), pads.end());
  p.mode = a.at("mode").get<std::string>();
  p.value = a.at("value").get<double>();
  for (size_t i = 0; i < rank; ++i) {
    if (p.before[i] < 0 || p.after[i] < 0) fail("negative padding (use slice to crop)");
    if (in[i] == kOpenDim && (p.before[i] || p.after[i])) fail("cannot pad the open batch dimension");
    if (p.mode == "reflect" && in[i] != kOpenDim && (p.before[i] >= in[i] || p.after[i] >= in[i]))
      fail("reflect padding of axis " + std::to_string(i) + " must be smaller than its size " + std::to_string(in[i]));
    if (p.mode == "edge" && in[i] == 0) fail("edge padding of an empty axis");
  }
  return p;
}

// The source index along one axis of size d for output position o, and
// whether it is inside (constant mode: outside reads `value`).
int64_t pad_source(int64_t o, int64_t before, int64_t d, const std::string& mode, bool& inside) {
  int64_t j = o - before;
  inside = j >= 0 && j < d;
  if (mode == "edge") return std::clamp<int64_t>(j, 0, d - 1);
  if (mode == "reflect") {
    if (j < 0) j = -j;
    if (j >= d) j = 2 * (d - 1) - j;
    return j;
  }
  return std::clamp<int64_t>(j, 0, d - 1);
}

E pad_source_expr(E o, int64_t before, E d, const std::string& mode, E& inside) {
  E j = o - E(before);
  inside = (j >= E(0)) && (j < d);
  E clamped = lower::max(E(0), lower::min(j, d - E(1)));
  if (mode == "reflect") {
    E r = lower::select(j < E(0), E(0) - j, j);
    return lower::select(r >= d, (d - E(1)) * E(2) - r, r);
  }
  return clamped;
}

// A slice is its input's bytes from some offset on when it keeps one index
// of every axis before some axis k, a unit-step range of axis k and all of
// every axis after it.
static std::optional<int64_t> contiguous_slice_offset(const Node& n, const TensorType& in) {
  auto axes = resolve_slice(n.attrs, in.shape);
  size_t k = 0;
  while (k < axes.size() && axes[k].count == 1) ++k;
  if (k < axes.size() && axes[k].step != 1 && axes[k].count > 1) return std::nullopt;
  for (size_t d = k + 1; d < axes.size(); ++d)
    if (axes[d].start != 0 || axes[d].step != 1 || axes[d].count != in.shape[d]) return std::nullopt;
  int64_t offset = 0, stride = 1;
  for (size_t d = axes.size(); d-- > 0;) {
    offset += axes[d].start * stride;
    stride *= in.shape[d] == kOpenDim ? 1 : in.shape[d];
  }
  return offset;
}

// ---- gather ----
int64_t indices_along_axis_bound(const Graph& g, const Node& n, int k) {
  if (k != 1) return 0;
  const Shape& s = g.node(n.inputs[0]).type.shape;
  return s[static_cast<size_t>(normalize_axis(n.attrs.at("axis").get<int64_t>(), static_cast<int>(s.size())))];
}

TensorType gather_type(const TensorType& data, const TensorType& idx, int axis) {
  Shape s(data.shape.begin(), data.shape.begin() + axis);
  s.insert(s.end(), idx.shape.begin(), idx.shape.end());
  s.insert(s.end(), data.shape.begin() + axis + 1, data.shape.end());
  return {data.dtype, s};
}

static void add_movement_ops(OpRegistry& r) {
  r.add({.name = "concat", .family = "movement", .summary = "inputs joined along an axis",
         .inputs = {"x"}, .variadic = true,
         .attrs = {{"axis", AttrKind::Int, true, nullptr, "the joining axis (negative: from the end)", {}, -64, 63}},
         .shape_rule = "x_i: [..., d_i, ...] (equal elsewhere) -> [..., sum d_i, ...]",
         .infer = [](const InferCtx& c) {
           if (c.in.empty()) throw OpError("concat needs at least one input");
           const int ax = normalize_axis(c.i("axis"), c.in[0].rank());
           TensorType t = c.in[0];
           for (size_t i = 1; i < c.in.size(); ++i) {
             const TensorType& u = c.in[i];
             bool same = u.dtype == t.dtype && u.rank() == t.rank();
             for (int j = 0; same && j < t.rank(); ++j) same = j == ax || u.shape[j] == t.shape[j];
             if (!same)
               throw OpError("input " + std::to_string(i) + " " + type_str(u) + " does not match " + type_str(c.in[0]) +
                             " outside axis " + std::to_string(ax));
             if (u.shape[ax] == kOpenDim || t.shape[ax] == kOpenDim)
               throw OpError("cannot concat along the open batch dimension");
             t.shape[ax] += u.shape[ax];
           }
           return t;
         },
         .pattern = OpPattern::data_movement,
         .inlines_elementwise_input = true,  // each part's producer writes straight into its place
         .samples = {{{{{-1, 5}}, {{-1, 17}}, {{-1, 3}}}, {{"axis", 1}}},
                     {{{{2, 33}}, {{5, 33}}}, {{"axis", 0}}},
                     {{{{-1, 3, 4}}, {{-1, 2, 4}}}, {{"axis", -2}}}}});

  r.add({.name = "slice", .family = "movement", .summary = "elements start, start + step, ... (before end) along axes",
         .inputs = {"x"}, .attrs = slice_attrs(),
         .shape_rule = "x: S -> S with each sliced axis of length ceil((end - start) / step)",
         .infer = [](const InferCtx& c) {
           auto axes = resolve_slice(c.attrs, c.in[0].shape);
           TensorType t = c.in[0];
           for (size_t i = 0; i < axes.size(); ++i) t.shape[i] = axes[i].count;
           return t;
         },
         .pattern = OpPattern::data_movement,
         .view = contiguous_slice_offset,
         .samples = {{{{{-1, 17}}}, {{"starts", {2}}, {"ends", {-3}}, {"axes", {1}}}},
                     {{{{-1, 33, 5}}}, {{"starts", {30, 1}}, {"ends", {-100, 5}}, {"axes", {1, 2}}, {"steps", {-3, 2}}}},
                     {{{{7, 9}}}, {{"starts", {1, 0}}, {"ends", {6, 9}}, {"steps", {2, 4}}}}}});
  r.add({.name = "slice_grad", .family = "movement",
         .summary = "the gradient of slice: dy placed back where slice took it from, zeros elsewhere",
         .inputs = {"dy"}, .attrs = [] {
           auto a = slice_attrs();
           a.push_back({"shape", AttrKind::Shape, true, nullptr, "the sliced tensor's shape"});
           return a;
         }(),
         .shape_rule = "dy: slice's output -> shape",
         .infer = [](const InferCtx& c) {
           TensorType t{c.in[0].dtype, c.attrs.at("shape").get<Shape>()};
           auto axes = resolve_slice(c.attrs, t.shape);
           for (size_t i = 0; i < axes.size(); ++i)
             if (axes[i].count != c.in[0].shape[i]) throw OpError("dy " + type_str(c.in[0]) + " is not this slice's output");
           return t;
         },
         .pattern = OpPattern::data_movement,
         .samples = {{{{{-1, 4}}}, {{"starts", {2}}, {"ends", {-3}}, {"axes", {1}}, {"shape", {-1, 9}}}},
                     {{{{3, 5}}}, {{"starts", {8, 0}}, {"ends", {-100, 5}}, {"steps", {-3, 1}}, {"shape", {9, 5}}}}}});

  r.add({.name = "pad", .family = "movement", .summary = "a border around x: a constant, x mirrored (reflect) or its edge repeated",
         .inputs = {"x"}, .attrs = pad_attrs(),
         .shape_rule = "x: S -> S[i] + before_i + after_i",
         .infer = [](const InferCtx& c) {
           PadSpec p = pad_spec(c.attrs, c.in[0].shape);
           TensorType t = c.in[0];
           for (size_t i = 0; i < t.shape.size(); ++i)
             if (t.shape[i] != kOpenDim) t.shape[i] += p.before[i] + p.after[i];
           return t;
         },
         .pattern = OpPattern::data_movement,
         .samples = {{{{{-1, 7, 5}}}, {{"pads", {0, 1, 2, 0, 3, 1}}, {"value", 0.5}}},
                     {{{{-1, 7, 5}}}, {{"pads", {0, 2, 1, 0, 3, 4}}, {"mode", "reflect"}}},
                     {{{{4, 5}}}, {{"pads", {2, 0, 1, 3}}, {"mode", "edge"}}}}});
  r.add({.name = "pad_grad", .family = "movement",
         .summary = "the gradient of pad: each element of dy added to the element of x it was read from",
         .inputs = {"dy"},
         .attrs = [] {
           auto a = pad_attrs();
           a.push_back({"shape", AttrKind::Shape, true, nullptr, "the padded tensor's shape"});
           return a;
         }(),
         .shape_rule = "dy: pad's output -> shape",
         // The adjoint of padding, one axis at a time (the axes' paddings commute):
         // the interior, plus the border folded back where it was read from.
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           const Shape shape = a.at("shape").get<Shape>(), dys = b.type(in[0]).shape;
           PadSpec p = pad_spec(a, shape);
           const int64_t rank = static_cast<int64_t>(shape.size());
           for (size_t i = 0; i < shape.size(); ++i)
             if (shape[i] != kOpenDim && shape[i] + p.before[i] + p.after[i] != dys[i])
               throw OpError("dy " + shape_str(dys) + " is not the output of this pad of " + shape_str(shape));
           auto part = [&](NodeId g, int64_t ax, int64_t from, int64_t to) {
             return b.add("slice", {g}, {{"starts", {from}}, {"ends", {to}}, {"axes", {ax}}});
           };
           auto place = [&](NodeId g, int64_t ax, int64_t before, int64_t after) {
             std::vector<int64_t> pads(static_cast<size_t>(2 * rank), 0);
             pads[static_cast<size_t>(ax)] = before, pads[static_cast<size_t>(rank + ax)] = after;
             return b.add("pad", {g}, {{"pads", pads}});
           };
           NodeId g = in[0];
           for (int64_t ax = 0; ax < rank; ++ax) {
             const int64_t bf = p.before[static_cast<size_t>(ax)], af = p.after[static_cast<size_t>(ax)];
             const int64_t d = shape[static_cast<size_t>(ax)];
             if (!bf && !af) continue;
             NodeId dx = part(g, ax, bf, bf + d);
             auto flip = [&](NodeId x) { return b.add("flip", {x}, {{"axes", {ax}}}); };
             auto sum = [&](NodeId x) { return b.add("reduce_sum", {x}, {{"axes", {ax}}, {"keepdims", true}}); };
             if (bf && p.mode == "reflect") dx = b.add2("add", dx, place(flip(part(g, ax, 0, bf)), ax, 1, d - 1 - bf));
             if (af && p.mode == "reflect") dx = b.add2("add", dx, place(flip(part(g, ax, bf + d, bf + d + af)), ax, d - 1 - af, 1));
             if (bf && p.mode == "edge") dx = b.add2("add", dx, place(sum(part(g, ax, 0, bf)), ax, 0, d - 1));
             if (af && p.mode == "edge") dx = b.add2("add", dx, place(sum(part(g, ax, bf + d, bf + d + af)), ax, d - 1, 0));
             g = dx;
           }
           return g;
         },
         .pattern = OpPattern::data_movement,
         .samples = {{{{{-1, 10, 9}}}, {{"pads", {0, 1, 2, 0, 2, 2}}, {"mode", "reflect"}, {"shape", {-1, 7, 5}}}},
                     {{{{7, 9}}}, {{"pads", {2, 0, 1, 4}}, {"mode", "edge"}, {"shape", {4, 5}}}},
                     {{{{7, 9}}}, {{"pads", {2, 0, 1, 4}}, {"shape", {4, 5}}}}}});

  r.add({.name = "gather", .family = "movement",
         .summary = "slices of data along an axis picked by integer indices (negative: from the end; outside the axis: zeros)",
         .inputs = {"data", "indices"},
         .attrs = {{"axis", AttrKind::Int, false, 0, "the axis indexed", {}, -64, 63}},
         .shape_rule = "data: [A..., d, B...], indices: I -> [A..., I..., B...]",
         .infer = [](const InferCtx& c) {
           check_indices(c.in[1], "indices");
           int ax = normalize_axis(c.i("axis"), c.in[0].rank());
           if (c.in[0].shape[ax] == kOpenDim) throw OpError("cannot gather along the open batch dimension");
           TensorType t = gather_type(c.in[0], c.in[1], ax);
           for (size_t i = 1; i < t.shape.size(); ++i)
             if (t.shape[i] == kOpenDim) throw OpError("the result " + shape_str(t.shape) + " would move the open batch dimension");
           return t;
         },
         .pattern = OpPattern::data_movement,
         .index_bound = indices_along_axis_bound,
         .samples = {{{{{33, 8}}, {{-1, 5}, 0, 33, DType::i32}}},                       // an embedding lookup
                     {{{{-1, 17, 3}}, {{4}, -17, 17, DType::i64}}, {{"axis", 1}}}}});  // negative indices
  r.add({.name = "scatter_add", .family = "movement",
         .summary = "data plus updates added at the indices along an axis (gather's gradient; repeated indices add up, in order)",
         .inputs = {"data", "indices", "updates"},
         .attrs = {{"axis", AttrKind::Int, false, 0, "the axis indexed", {}, -64, 63}},
         .shape_rule = "data: D, indices: I, updates: gather(D, I)'s shape -> D",
         .infer = [](const InferCtx& c) {
           check_indices(c.in[1], "indices");
           int ax = normalize_axis(c.i("axis"), c.in[0].rank());
           if (c.in[0].shape[ax] == kOpenDim) throw OpError("cannot scatter along the open batch dimension");
           TensorType want = gather_type(c.in[0], c.in[1], ax);
           if (c.in[2].shape != want.shape || c.in[2].dtype != c.in[0].dtype)
             throw OpError("updates " + type_str(c.in[2]) + " must have gather's result type " + type_str(want));
           return c.in[0];
         },
         .pattern = OpPattern::data_movement,
         .index_bound = indices_along_axis_bound,
         .samples = {{{{{9, 5}}, {{-1}, 0, 9, DType::i32}, {{-1, 5}}}},
                     {{{{-1, 6}}, {{3, 2}, -6, 6, DType::i64}, {{-1, 3, 2}}}, {{"axis", 1}}}}});

  r.add({.name = "squeeze", .family = "movement", .summary = "drop axes of size 1 (reshape)", .inputs = {"x"},
         .attrs = {{"axes", AttrKind::IntList, false, nlohmann::json::array(), "which (default: every size-1 axis)", {}, -64, 63}},
         .shape_rule = "x: S -> S without the listed size-1 axes",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           const Shape s = b.type(in[0]).shape;
           std::vector<bool> drop(s.size(), false);
           auto axes = a.at("axes").get<std::vector<int64_t>>();
           for (size_t i = 0; i < s.size(); ++i) drop[i] = axes.empty() && s[i] == 1;
           for (int64_t ax : axes) {
             int i = normalize_axis(ax, static_cast<int>(s.size()));
             if (s[static_cast<size_t>(i)] != 1)
               throw OpError("axis " + std::to_string(ax) + " has size " + dim_text(s[static_cast<size_t>(i)]) + ", not 1");
             drop[static_cast<size_t>(i)] = true;
           }
           Shape out;
           for (size_t i = 0; i < s.size(); ++i)
             if (!drop[i]) out.push_back(s[i]);
           return b.add("reshape", {in[0]}, {{"shape", out}});
         },
         .pattern = OpPattern::data_movement,
         .samples = {{{{{-1, 1, 17, 1}}}}, {{{{-1, 1, 5, 1}}}, {{"axes", {-1}}}}}});
  r.add({.name = "unsqueeze", .family = "movement", .summary = "insert axes of size 1 (reshape)", .inputs = {"x"},
         .attrs = {{"axes", AttrKind::IntList, true, nullptr, "their positions in the result", {}, -64, 63}},
         .shape_rule = "x: S -> S with 1 inserted at each axis",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           const Shape s = b.type(in[0]).shape;
           auto axes = a.at("axes").get<std::vector<int64_t>>();
           const int rank = static_cast<int>(s.size() + axes.size());
           std::vector<bool> inserted(static_cast<size_t>(rank), false);
           for (int64_t ax : axes) {
             int i = normalize_axis(ax, rank);
             if (inserted[static_cast<size_t>(i)]) throw OpError("axis " + std::to_string(ax) + " is listed twice");
             inserted[static_cast<size_t>(i)] = true;
           }
           Shape out;
           size_t next = 0;
           for (int i = 0; i < rank; ++i) out.push_back(inserted[static_cast<size_t>(i)] ? 1 : s[next++]);
           return b.add("reshape", {in[0]}, {{"shape", out}});
         },
         .pattern = OpPattern::data_movement,
         .samples = {{{{{-1, 17}}}, {{"axes", {1}}}}, {{{{-1, 5}}}, {{"axes", {-1, 2}}}}}});

  // One part of a split. A JSON node without `index` defines every part,
  // as nodes <name>/0, <name>/1, ... (compiler/frontend/graph_json.cpp).
  r.add({.name = "split", .family = "movement", .summary = "one of the consecutive parts of x along an axis (a slice)",
         .inputs = {"x"},
         .attrs = {{"axis", AttrKind::Int, false, 0, "the split axis (negative: from the end)", {}, -64, 63},
                   {"sizes", AttrKind::IntList, false, nlohmann::json::array(), "each part's length (they sum to the axis)", {}, 1},
                   {"parts", AttrKind::Int, false, 0, "instead of sizes: this many parts of ceil(d / parts), the last shorter", {}, 0},
                   {"index", AttrKind::Int, false, -1, "which part; a JSON node without it defines <name>/0 ... <name>/(k-1)", {}, -1}},
         .shape_rule = "x: [..., d, ...] -> [..., sizes[index], ...]",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           const Shape s = b.type(in[0]).shape;
           const int ax = normalize_axis(a.at("axis").get<int64_t>(), static_cast<int>(s.size()));
           const int64_t d = s[static_cast<size_t>(ax)], parts = a.at("parts").get<int64_t>();
           auto sizes = a.at("sizes").get<std::vector<int64_t>>();
           if (d == kOpenDim) throw OpError("cannot split along the open batch dimension");
           if (sizes.empty() == (parts == 0)) throw OpError("give either sizes or parts");
           if (parts > d) throw OpError(std::to_string(parts) + " parts of an axis of length " + std::to_string(d));
           if (parts) {
             const int64_t chunk = (d + parts - 1) / parts;
             if (chunk * (parts - 1) >= d)
               throw OpError(std::to_string(parts) + " parts of " + std::to_string(chunk) + " leave nothing for the last of an axis of length " + std::to_string(d));
             sizes.assign(static_cast<size_t>(parts), chunk);
             sizes.back() = d - chunk * (parts - 1);
           }
           int64_t total = 0;
           for (int64_t n : sizes) total += n;
           if (total != d)
             throw OpError("sizes sum to " + std::to_string(total) + ", but axis " + std::to_string(ax) + " has length " + std::to_string(d));
           const int64_t index = a.at("index").get<int64_t>();
           if (index < 0 || index >= static_cast<int64_t>(sizes.size()))
             throw OpError("index " + std::to_string(index) + " is not one of the " + std::to_string(sizes.size()) + " parts");
           int64_t start = 0;
           for (int64_t i = 0; i < index; ++i) start += sizes[static_cast<size_t>(i)];
           return b.add("slice", {in[0]}, {{"starts", {start}}, {"ends", {start + sizes[static_cast<size_t>(index)]}}, {"axes", {ax}}});
         },
         .pattern = OpPattern::data_movement,
         .samples = {{{{{-1, 17}}}, {{"axis", 1}, {"sizes", {5, 12}}, {"index", 1}}},
                     {{{{33, 4}}}, {{"parts", 3}, {"index", 2}}},
                     {{{{-1, 3, 5}}}, {{"axis", -1}, {"parts", 2}, {"index", 1}}}}});

  r.add({.name = "tile", .family = "movement", .summary = "x repeated along each axis", .inputs = {"x"},
         .attrs = {{"repeats", AttrKind::IntList, true, nullptr, "copies per axis (1 keeps it)", {}, 1, 1 << 20}},
         .shape_rule = "x: S -> S[i] * repeats[i]",
         .infer = [](const InferCtx& c) {
           auto reps = c.ints("repeats");
           if (static_cast<int>(reps.size()) != c.in[0].rank())
             throw OpError("repeats has " + std::to_string(reps.size()) + " entries for a rank-" +
                           std::to_string(c.in[0].rank()) + " input");
           TensorType t = c.in[0];
           for (size_t i = 0; i < reps.size(); ++i) {
             if (t.shape[i] == kOpenDim && reps[i] != 1) throw OpError("cannot tile the open batch dimension");
             if (t.shape[i] != kOpenDim) t.shape[i] *= reps[i];
           }
           return t;
         },
         .pattern = OpPattern::data_movement,
         .samples = {{{{{-1, 17}}}, {{"repeats", {1, 3}}}}, {{{{3, 1, 5}}}, {{"repeats", {2, 4, 1}}}}}});
  r.add({.name = "flip", .family = "movement", .summary = "reverse the order along axes", .inputs = {"x"},
         .attrs = {{"axes", AttrKind::IntList, true, nullptr, "the reversed axes", {}, -64, 63}},
         .shape_rule = "x: S -> S",
         .infer = [](const InferCtx& c) {
           for (int64_t ax : c.ints("axes"))
             if (c.in[0].shape[static_cast<size_t>(normalize_axis(ax, c.in[0].rank()))] == kOpenDim)
               throw OpError("cannot flip the open batch dimension");
           return c.in[0];
         },
         .pattern = OpPattern::data_movement,
         .algebra = {.involution = true},
         .samples = {{{{{-1, 17}}}, {{"axes", {1}}}}, {{{{3, 5, 4}}}, {{"axes", {0, -1}}}}}});
  r.add({.name = "range", .family = "movement", .summary = "start, start + delta, ... before limit",
         .attrs = {{"start", AttrKind::Float, false, 0.0, "first value"},
                   {"limit", AttrKind::Float, true, nullptr, "bound (excluded)"},
                   {"delta", AttrKind::Float, false, 1.0, "step (nonzero)"},
                   {"dtype", AttrKind::Enum, false, "f32", "element type", {"f32", "f64", "i32", "i64"}}},
         .shape_rule = "-> [max(0, ceil((limit - start) / delta))]",
         .infer = [](const InferCtx& c) {
           double d = c.f("delta");
           if (d == 0) throw OpError("range's delta is 0");
           double n = std::ceil((c.f("limit") - c.f("start")) / d);
           if (n > (1 << 30)) throw OpError("range of " + std::to_string(n) + " elements is absurdly large");
           return TensorType{*parse_dtype(c.s("dtype")), {static_cast<int64_t>(std::max(0.0, n))}};
         },
         .pattern = OpPattern::source,
         .samples = {{{}, {{"limit", 17}}}, {{}, {{"start", 5}, {"limit", -3}, {"delta", -0.75}, {"dtype", "f64"}}},
                     {{}, {{"start", -2}, {"limit", 31}, {"delta", 3}, {"dtype", "i32"}}}}});
}

void register_movement_family(OpRegistry& r) {
  add_movement_ops(r);
  add_movement_gradients(r);
  add_movement_reference(r);
  add_movement_lowering(r);
  for (const char* name : {"concat", "gather", "scatter_add"}) r.find_mut(name)->mixes_along = mixes_along_attr("axis");
  r.find_mut("gather")->mixing_inputs = 1;  // the table; each output row reads its own row of indices
  for (const char* name : {"slice", "slice_grad", "flip"}) r.find_mut(name)->mixes_along = mixes_along_attr("axes");
  r.find_mut("pad")->mixes_along = [](const Graph&, const Node& n) {  // the axes with a border
    const auto pads = n.attrs.at("pads").get<std::vector<int64_t>>();
    const size_t rank = pads.size() / 2;
    std::vector<int> axes;
    for (size_t a = 0; a < rank; ++a)
      if (pads[a] != 0 || pads[rank + a] != 0) axes.push_back(static_cast<int>(a));
    return axes;
  };
  r.find_mut("tile")->mixes_along = [](const Graph&, const Node& n) {  // the axes repeated
    const auto repeats = n.attrs.at("repeats").get<std::vector<int64_t>>();
    std::vector<int> axes;
    for (size_t a = 0; a < repeats.size(); ++a)
      if (repeats[a] != 1) axes.push_back(static_cast<int>(a));
    return axes;
  };
}

}  // namespace kiln
