// ONNX reductions and arg-reductions.
#include "compiler/frontend/onnx/convert.h"

namespace kiln::onnx {

using json = nlohmann::json;

namespace {

// `pre` and `post` wrap kiln's reduction (ReduceSumSquare: square, sum).
void reduction(ConverterTable& t, const char* onnx_op, const char* kiln_op, const char* pre = nullptr,
               const char* post = nullptr) {
  t[onnx_op] = [=](NodeCtx& c) {
    bool keepdims = c.attr_int("keepdims", 1) != 0;
    bool noop_empty = c.attr_int("noop_with_empty_axes", 0) != 0;
    // ReduceSum takes axes as an input from opset 13 (the others from 18).
    bool axes_input = std::string(onnx_op) == "ReduceSum" ? c.opset() >= 13 : c.opset() >= 18;
    std::vector<int64_t> axes = axes_input ? (c.has(1) ? c.need_ints(1, "axes") : std::vector<int64_t>{}) : c.attr_ints("axes");
    std::string x = c.in(0);
    if (pre) x = c.emit(pre, {x});
    if (axes.empty() && noop_empty) return void(c.emit_out(0, "add", {x, c.scalar(0, c.kiln_type(x).dtype)}));
    if (axes.empty())
      for (int64_t a = 0; a < c.rank(0); ++a) axes.push_back(a);
    for (auto& a : axes) a = NodeCtx::axis(a, c.rank(0));
    std::string r = c.emit(kiln_op, {x}, {{"axes", ints_json(axes)}, {"keepdims", keepdims}});
    if (post) r = c.emit(post, {r});
    c.out(0, r);
  };
}

void arg_reduction(ConverterTable& t, const char* onnx_op, const char* kiln_op) {
  t[onnx_op] = [=](NodeCtx& c) {
    int64_t axis = NodeCtx::axis(c.attr_int("axis", 0), c.rank(0));
    bool keepdims = c.attr_int("keepdims", 1) != 0;
    bool last = c.attr_int("select_last_index", 0) != 0;
    std::string x = c.in(0);
    if (last) x = c.emit("flip", {x}, {{"axes", {axis}}});
    std::string r = c.emit("cast", {c.emit(kiln_op, {x}, {{"axis", axis}})}, {{"dtype", "i64"}});
    if (last) {  // the first index in the flipped tensor is the last in the original
      int64_t d = c.shape(0)[static_cast<size_t>(axis)];
      r = c.emit("sub", {c.scalar(static_cast<double>(d - 1), DType::i64), r});
    }
    if (keepdims) r = c.emit("unsqueeze", {r}, {{"axes", {axis}}});
    c.out(0, r);
  };
}

}  // namespace

void register_reduce(ConverterTable& t) {
  reduction(t, "ReduceSum", "reduce_sum");
  reduction(t, "ReduceMean", "reduce_mean");
  reduction(t, "ReduceMax", "reduce_max");
  reduction(t, "ReduceMin", "reduce_min");
  reduction(t, "ReduceProd", "reduce_prod");
  reduction(t, "ReduceL1", "reduce_l1");
  reduction(t, "ReduceL2", "reduce_l2");
  reduction(t, "ReduceLogSumExp", "reduce_logsumexp");
  reduction(t, "ReduceSumSquare", "reduce_sum", "square");
  reduction(t, "ReduceLogSum", "reduce_sum", nullptr, "log");
  arg_reduction(t, "ArgMax", "argmax");
  arg_reduction(t, "ArgMin", "argmin");
}

}  // namespace kiln::onnx
