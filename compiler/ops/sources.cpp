// Sources: the leaves of every graph (inputs fed per step, persistent params
// and optimizer state, constants) and dim_size, the run-time size of a dimension.
#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

static TensorType declared_type(const InferCtx& c) {
  auto dt = parse_dtype(c.s("dtype"));
  if (!dt) throw OpError("unknown dtype '" + c.s("dtype") + "' (use f32, f64, i32, i64 or bool)");
  return {*dt, c.ints("shape")};
}

static void add_source_ops(OpRegistry& r) {
  r.add({.name = "input", .family = "sources",
         .summary = "A tensor fed at every step (a batch of data, labels, a learning rate).",
         .attrs = {{"shape", AttrKind::Shape, true, nullptr, "dimensions; -1 marks the open batch dimension"},
                   {"dtype", AttrKind::Enum, false, "f32", "element type", {"f32", "f64", "i32", "i64", "bool"}}},
         .shape_rule = "the declared shape and dtype",
         .infer = [](const InferCtx& c) {
           auto t = declared_type(c);
           for (size_t i = 1; i < t.shape.size(); ++i)
             if (t.shape[i] == kOpenDim) throw OpError("only the leading (batch) dimension may be open (-1)");
           return t;
         },
         .pattern = OpPattern::source,
         .pure = false,
         .interface = true});

  r.add({.name = "param", .family = "sources",
         .summary = "A persistent tensor: a model parameter (role param) or optimizer state (role state).",
         .attrs = {{"shape", AttrKind::Shape, true, nullptr, "dimensions (all static)"},
                   {"dtype", AttrKind::Enum, false, "f32", "element type", {"f32", "f64", "i32", "i64", "bool"}},
                   {"init", AttrKind::Object, false, nlohmann::json{{"kind", "zeros"}}, "initializer"},
                   {"trainable", AttrKind::Bool, false, true, "receives gradients by default"},
                   {"role", AttrKind::Enum, false, "param", "param or optimizer state", {"param", "state"}}},
         .shape_rule = "the declared shape and dtype",
         .infer = [](const InferCtx& c) {
           auto t = declared_type(c);
           if (has_open_dim(t.shape)) throw OpError("a param's shape must be static, got " + shape_str(t.shape));
           if (numel(t.shape) > (int64_t{1} << 31))
             throw OpError("param of " + std::to_string(numel(t.shape)) + " elements is absurdly large");
           return t;
         },
         .pattern = OpPattern::source,
         .pure = false,
         .interface = true});

  r.add({.name = "constant", .family = "sources",
         .summary = "A literal: a scalar, or a flat list of values with a shape.",
         .attrs = {{"value", AttrKind::Tensor, true, nullptr, "a number, or a row-major flat list"},
                   {"shape", AttrKind::Shape, false, nlohmann::json::array(), "dimensions ([] for a scalar)"},
                   {"dtype", AttrKind::Enum, false, "f32", "element type", {"f32", "f64", "i32", "i64", "bool"}}},
         .shape_rule = "shape; a list value must hold exactly prod(shape) numbers",
         .infer = [](const InferCtx& c) {
           auto t = declared_type(c);
           if (has_open_dim(t.shape)) throw OpError("a constant's shape must be static");
           auto& v = c.attrs.at("value");
           if (v.is_array() && static_cast<int64_t>(v.size()) != numel(t.shape))
             throw OpError("constant holds " + std::to_string(v.size()) + " values but its shape " +
                           shape_str(t.shape) + " needs " + std::to_string(numel(t.shape)));
           return t;
         },
         .pattern = OpPattern::source,
         .samples = {{{}, {{"value", {1.5, -2, 0.25}}, {"shape", {3}}}}, {{}, {{"value", 2}, {"dtype", "i32"}}}}});

  r.add({.name = "dim_size", .family = "sources",
         .summary = "The size of one dimension of x as a scalar (the run-time batch size for the open dimension).",
         .inputs = {"x"},
         .attrs = {{"axis", AttrKind::Int, true, nullptr, "which dimension"},
                   {"dtype", AttrKind::Enum, false, "f32", "result type", {"f32", "f64", "i32", "i64"}}},
         .shape_rule = "x: any -> scalar",
         .infer = [](const InferCtx& c) {
           normalize_axis(c.i("axis"), c.in[0].rank());
           return TensorType{*parse_dtype(c.s("dtype")), {}};
         },
         .no_grad = true,
         .pattern = OpPattern::source,
         .fold_from_types = [](const Graph& g, const Node& n) -> std::optional<double> {
           const Shape& s = g.node(n.inputs[0]).type.shape;
           int64_t d = s.at(static_cast<size_t>(normalize_axis(n.attrs.at("axis").get<int64_t>(), static_cast<int>(s.size()))));
           if (d == kOpenDim) return std::nullopt;
           return static_cast<double>(d);
         },
         .reads_shape_only = true,
         .samples = {{{{{-1, 17}}}, {{"axis", 0}}}, {{{{-1, 17}}}, {{"axis", -1}, {"dtype", "i64"}}}}});
}

// ---- gradient rules (compiler/autodiff calls them) ----
static void add_source_gradients(OpRegistry& r) {
}

// ---- reference kernels (compiler/interp runs them) ----
// input and param have no kernel: the interpreter binds them to the fed values.
static void add_source_reference(OpRegistry& r) {
  r.find_mut("constant")->reference = [](interp::RefCtx& c) {
    auto shape = c.concrete(c.attrs.at("shape").get<Shape>());
    c.out = interp::Array::from_shape(shape);
    const auto& v = c.attrs.at("value");
    if (v.is_number()) {
      c.out.fill(v.get<double>());  // a scalar value fills the whole shape
    } else {
      size_t i = 0;
      for (double& x : c.out) x = v[i++].get<double>();
    }
  };
  r.find_mut("dim_size")->reference = [](interp::RefCtx& c) {
    int axis = normalize_axis(c.attrs.at("axis").get<int64_t>(), static_cast<int>(c.in[0]->dimension()));
    c.out = interp::scalar_array(static_cast<double>(c.in[0]->shape()[static_cast<size_t>(axis)]));
  };
}

// ---- lowering to loop IR (compiler/lower) ----
static void add_source_lowering(OpRegistry& r) {
  // input, param and constant need no kernel: lower_program gives them their
  // buffers (step inputs, persistent storage, embedded data).
  r.find_mut("dim_size")->lower = [](lower::LowerCtx& c) {
    using namespace lower;
    int axis = normalize_axis(c.attrs.at("axis").get<int64_t>(), c.in[0].rank());
    auto k = c.kernel("size of dimension " + std::to_string(axis) + " of %" + c.graph.node(c.node.inputs[0]).name);
    k.store(c.out, 0, cast(c.in[0].dim(axis), c.out.scalar()));
  };
}

// One registration for the family: its ops, then their gradients, reference
// kernels and lowerings.
void register_source_family(OpRegistry& r) {
  add_source_ops(r);
  add_source_gradients(r);
  add_source_reference(r);
  add_source_lowering(r);
}

}  // namespace kiln
