// Across the ranks of a data-parallel job: cross_rank_sum, what synchronized
// batch norm sums its statistics with. Its kernel copies the input; the
// runtime then sums that buffer over the ranks in rank order (every rank gets
// the same bits) before the next kernel runs. On one process it is the
// identity, which is also the interpreter's answer.
#include "compiler/interp/ref_ctx.h"
#include "compiler/ir/builder.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"

namespace kiln {

void register_distributed_family(OpRegistry& r) {
  r.add({.name = "cross_rank_sum", .family = "distributed",
         .summary = "x summed over the ranks of a data-parallel job, in rank order (one process: x)",
         .inputs = {"x"},
         .shape_rule = "x: f32 S (no open batch dimension) -> S",
         .infer = [](const InferCtx& c) {
           if (c.in[0].dtype != DType::f32) throw OpError("cross_rank_sum sums f32 values, got " + type_str(c.in[0]));
           for (int64_t d : c.in[0].shape)
             if (d == kOpenDim)
               throw OpError("cross_rank_sum needs the same shape on every rank; " + type_str(c.in[0]) +
                             " has the open batch dimension");
           return c.in[0];
         },
         .pattern = OpPattern::opaque,
         .pure = false,  // not folded or merged: its value depends on the other ranks
         .samples = {{{{{7}}}}, {{{{3, 33}}}}}});
  OpDef& d = *r.find_mut("cross_rank_sum");
  d.sums_over_ranks = true;
  // d(sum over ranks of x) / d x_r: every rank's cotangent, summed over the ranks.
  d.grad = [](GradCtx& c) -> std::vector<NodeId> { return {c.b.add("cross_rank_sum", {c.dy}, Attrs::object())}; };
  d.reference = [](interp::RefCtx& c) { c.out = *c.in[0]; };
  d.lower = [](lower::LowerCtx& c) {
    using namespace lower;
    auto k = c.kernel("copy, then summed over the ranks by the runtime");
    k.loop("i", 0, c.out.size(), [&](E i) { k.store(c.out, i, k.load(c.in[0], i)); });
  };
}

}  // namespace kiln
