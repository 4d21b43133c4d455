// maxpool2d (NHWC, TF padding) and its gradient, which routes each output's
// gradient to the first maximal element of its window (as TF does).
#include "compiler/ir/builder.h"
#include "compiler/ops/conv.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"

namespace kiln {

static std::vector<AttrSpec> pool_attrs() {
  return {{"pool", AttrKind::IntList, false, nlohmann::json::array({2, 2}), "[ph, pw] window", {}, 1, 1024},
          {"strides", AttrKind::IntList, false, nullptr, "[sh, sw] (default: the window)", {}, 1, 1024},
          {"padding", AttrKind::Enum, false, "valid", "TF padding", {"valid", "same"}}};
}

// Shape of maxpool2d's output for input type x, with the attrs checked.
static TensorType pool_output(const TensorType& x, const Attrs& a) {
  if (x.rank() != 4) throw OpError("maxpool2d input must be rank 4 (NHWC), got " + type_str(x));
  auto p = a.at("pool").get<std::vector<int64_t>>();
  auto s = a.contains("strides") ? a.at("strides").get<std::vector<int64_t>>() : p;
  if (p.size() != 2) throw OpError("pool must be [ph, pw]");
  if (s.size() != 2) throw OpError("strides must be [sh, sw]");
  auto g = conv_geometry(x.shape[1], x.shape[2], p[0], p[1], s[0], s[1], a.at("padding").get<std::string>());
  return {x.dtype, {x.shape[0], g.oh, g.ow, x.shape[3]}};
}

void register_pool_ops(OpRegistry& r) {
  r.add({.name = "maxpool2d", .family = "pool", .summary = "max over windows, NHWC", .inputs = {"x"},
         .attrs = pool_attrs(),
         .shape_rule = "x: [N,H,W,C] -> [N,OH,OW,C] (valid: OH=(H-PH)/S+1, same: ceil(H/S))",
         .infer = [](const InferCtx& c) { return pool_output(c.in[0], c.attrs); }});
  r.add({.name = "maxpool2d_grad", .family = "pool",
         .summary = "gradient of maxpool2d: dy routed to the first maximum of each window of x",
         .inputs = {"x", "dy"}, .attrs = pool_attrs(),
         .shape_rule = "x: [N,H,W,C], dy: maxpool2d(x)'s shape -> [N,H,W,C]",
         .infer = [](const InferCtx& c) {
           TensorType y = pool_output(c.in[0], c.attrs);
           if (y.shape != c.in[1].shape)
             throw OpError("dy " + shape_str(c.in[1].shape) + " is not maxpool2d's output shape " + shape_str(y.shape));
           return c.in[0];
         }});
}

// ---- gradient rules (compiler/autodiff calls them) ----
// maxpool2d_grad itself has no gradient rule (second order is not needed).
void register_pool_gradients(OpRegistry& r) {
  r.find_mut("maxpool2d")->grad = [](GradCtx& c) -> std::vector<NodeId> {
    const Attrs attrs = c.graph().node(c.node).attrs;
    return {c.b.add("maxpool2d_grad", {c.x[0], c.dy}, attrs)};
  };
}

// ---- reference kernels (compiler/interp runs them) ----
void register_pool_reference(OpRegistry& r) {
}

// ---- lowering to loop IR (compiler/lower) ----
void register_pool_lowering(OpRegistry& r) {
}

}  // namespace kiln
