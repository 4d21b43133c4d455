// Activations and the dense layer, as composites of primitives: their
// gradients come from their decompositions, fusion gets their speed back.
#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

// max over `axis` kept as size 1, used to make softmax and log_softmax stable.
static NodeId max_keep(GraphBuilder& b, NodeId x, int64_t axis) {
  return b.add("reduce_max", {x}, {{"axes", {axis}}, {"keepdims", true}});
}

static TensorType float_only(const TensorType& t, const char* op) {
  if (!is_float(t.dtype)) throw OpError(std::string(op) + " needs a float tensor, got " + type_str(t));
  return t;
}

static void add_activation_ops(OpRegistry& r) {
  r.add({.name = "relu", .family = "activations", .summary = "max(x, 0) (composite: maximum)", .inputs = {"x"},
         .shape_rule = "x: S -> S",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs&) {
           float_only(b.type(in[0]), "relu");
           return b.add2("maximum", in[0], b.scalar_like(0.0, in[0]));
         },
         .pattern = OpPattern::elementwise,
         .kinks = Kinks::slope,
         .samples = unary_samples()});

  r.add({.name = "softmax", .family = "activations",
         .summary = "exp(x - max) / sum(exp(x - max)) along an axis (composite)", .inputs = {"x"},
         .attrs = {{"axis", AttrKind::Int, false, -1, "the axis", {}, -64, 63}},
         .shape_rule = "x: S -> S",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           float_only(b.type(in[0]), "softmax");
           int64_t axis = a.at("axis");
           NodeId shifted = b.add2("sub", in[0], max_keep(b, in[0], axis));
           NodeId e = b.add1("exp", shifted);
           NodeId s = b.add("reduce_sum", {e}, {{"axes", {axis}}, {"keepdims", true}});
           return b.add2("div", e, s);
         },
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 17}, -3, 3}}}, {{{{3, 5, 4}, -3, 3}}, {{"axis", 1}}}}});

  r.add({.name = "log_softmax", .family = "activations",
         .summary = "x - max - log(sum(exp(x - max))) along an axis (composite, stable for large logits)",
         .inputs = {"x"},
         .attrs = {{"axis", AttrKind::Int, false, -1, "the axis", {}, -64, 63}},
         .shape_rule = "x: S -> S",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           float_only(b.type(in[0]), "log_softmax");
           int64_t axis = a.at("axis");
           NodeId shifted = b.add2("sub", in[0], max_keep(b, in[0], axis));
           NodeId s = b.add("reduce_sum", {b.add1("exp", shifted)}, {{"axes", {axis}}, {"keepdims", true}});
           return b.add2("sub", shifted, b.add1("log", s));
         },
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 17}, -3, 3}}}, {{{{3, 5, 4}, -3, 3}}, {{"axis", 1}}}}});

  r.add({.name = "dense", .family = "activations", .summary = "x @ w + b (composite: matmul, add)",
         .inputs = {"x", "w", "b"},
         .shape_rule = "x: [M,K], w: [K,N], b: [N] -> [M,N]",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs&) {
           return b.add2("add", b.add2("matmul", in[0], in[1]), in[2]);
         },
         .pattern = OpPattern::contraction,
         .samples = {{{{{-1, 17}}, {{17, 5}}, {{5}}}}}});
}

// ---- gradient rules (compiler/autodiff calls them) ----
static void add_activation_gradients(OpRegistry& r) {
}

// ---- reference kernels (compiler/interp runs them) ----
static void add_activation_reference(OpRegistry& r) {
}

// ---- lowering to loop IR (compiler/lower) ----
static void add_activation_lowering(OpRegistry& r) {
}

// One registration for the family: its ops, then their gradients, reference
// kernels and lowerings.
void register_activation_family(OpRegistry& r) {
  add_activation_ops(r);
  add_activation_gradients(r);
  add_activation_reference(r);
  add_activation_lowering(r);
}

}  // namespace kiln
