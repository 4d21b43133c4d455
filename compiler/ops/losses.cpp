// Losses (all take logits or raw predictions, never probabilities) and the
// correct-prediction count, as composites of primitives. A loss never hides
// inside an activation: its gradient is derived from this decomposition.
#include "compiler/ir/builder.h"
#include "compiler/interp/ref_ctx.h"
#include "compiler/lower/lower_ctx.h"
#include "compiler/ops/registry.h"
#include "compiler/ops/samples.h"

namespace kiln {

static void require(bool ok, const std::string& msg) {
  if (!ok) throw OpError(msg);
}

// Mean over the batch (axis 0) of a per-example value.
static NodeId batch_mean(GraphBuilder& b, NodeId per_example) {
  return b.add("reduce_mean", {per_example}, {{"axes", {0}}});
}

// Sum over every axis but the batch axis.
static NodeId sum_per_example(GraphBuilder& b, NodeId x) {
  std::vector<int64_t> axes;
  for (int i = 1; i < b.type(x).rank(); ++i) axes.push_back(i);
  return axes.empty() ? x : b.add("reduce_sum", {x}, {{"axes", axes}});
}

static NodeId float_labels(GraphBuilder& b, NodeId labels, DType dt) {
  return b.type(labels).dtype == dt ? labels : b.add("cast", {labels}, {{"dtype", dtype_name(dt)}});
}

// Targets t over `classes` classes with label smoothing eps (PyTorch's):
// (1 - eps) t + eps / classes; t itself at eps = 0.
static NodeId smoothed(GraphBuilder& b, NodeId t, const Attrs& a, int64_t classes) {
  const double eps = a.at("label_smoothing").get<double>();
  if (eps <= 0) return t;
  return b.add2("add", b.add2("mul", t, b.scalar_like(1 - eps, t)),
                b.scalar_like(eps / static_cast<double>(classes), t));
}

static void add_loss_ops(OpRegistry& r) {
  r.add({.name = "mse", .family = "losses",
         .summary = "sum over classes of (pred - target)^2, mean over the batch (the seed's MSE)",
         .inputs = {"pred", "target"},
         .shape_rule = "pred: [N,...], target: same -> scalar",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs&) {
           require(b.type(in[0]).shape == b.type(in[1]).shape,
                   "pred " + type_str(b.type(in[0])) + " and target " + type_str(b.type(in[1])) + " differ in shape");
           require(b.type(in[0]).rank() >= 1, "mse needs a batch dimension");
           NodeId d = b.add2("sub", in[0], in[1]);
           return batch_mean(b, sum_per_example(b, b.add1("square", d)));
         },
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 17}}, {{-1, 17}}}}}});

  r.add({.name = "sparse_softmax_cross_entropy", .family = "losses",
         .summary = "mean over the batch of -log softmax(logits)[label], smoothed as softmax_cross_entropy's one-hot "
                    "targets are (PyTorch's cross_entropy(label_smoothing))",
         .inputs = {"logits", "labels"},
         .attrs = {{"label_smoothing", AttrKind::Float, false, 0.0, "mass moved evenly onto every class", {}, 0, 1}},
         .shape_rule = "logits: [N,C], labels: i32[N] -> scalar",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           auto lt = b.type(in[0]), yt = b.type(in[1]);
           require(lt.rank() == 2 && is_float(lt.dtype), "logits must be a float [N, C] matrix, got " + type_str(lt));
           require(yt.dtype == DType::i32 && yt.rank() == 1, "labels must be i32[N], got " + type_str(yt));
           require(yt.shape[0] == lt.shape[0], "labels " + type_str(yt) + " and logits " + type_str(lt) + " differ in batch size");
           NodeId logp = b.add("log_softmax", {in[0]});
           NodeId onehot = smoothed(
               b, b.add("one_hot", {in[1]}, {{"depth", lt.shape[1]}, {"dtype", dtype_name(lt.dtype)}}), a, lt.shape[1]);
           NodeId picked = b.add("reduce_sum", {b.add2("mul", onehot, logp)}, {{"axes", {1}}});
           return b.add1("neg", batch_mean(b, picked));
         },
         .pattern = OpPattern::opaque,
         .index_bound = [](const Graph& g, const Node& n, int k) -> int64_t {
           return k == 1 ? g.node(n.inputs[0]).type.shape.back() : 0;
         },
         .samples = {{{{{-1, 17}, -3, 3}, {{-1}, 0, 17, DType::i32}}},
                     {{{{-1, 5}, -3, 3}, {{-1}, 0, 5, DType::i32}}, {{"label_smoothing", 0.1}}}}});

  r.add({.name = "softmax_cross_entropy", .family = "losses",
         .summary = "mean over the batch of -sum(t * log softmax(logits)) for probability (or one-hot) targets t, "
                    "smoothed: t = (1 - label_smoothing) t + label_smoothing / C",
         .inputs = {"logits", "targets"},
         .attrs = {{"label_smoothing", AttrKind::Float, false, 0.0, "mass moved evenly onto every class", {}, 0, 1}},
         .shape_rule = "logits: [N,C], targets: [N,C] -> scalar",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           auto lt = b.type(in[0]);
           require(lt.rank() == 2 && is_float(lt.dtype), "logits must be a float [N, C] matrix, got " + type_str(lt));
           require(b.type(in[1]).shape == lt.shape,
                   "targets " + type_str(b.type(in[1])) + " and logits " + type_str(lt) + " differ in shape");
           NodeId t = smoothed(b, float_labels(b, in[1], lt.dtype), a, lt.shape[1]);
           NodeId logp = b.add("log_softmax", {in[0]});
           return b.add1("neg", batch_mean(b, sum_per_example(b, b.add2("mul", t, logp))));
         },
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 17}, -3, 3}, {{-1, 17}, 0, 1}}},
                     {{{{-1, 5}, -3, 3}, {{-1, 5}, 0, 1}}, {{"label_smoothing", 0.1}}}}});

  // Weighted mean over the examples kept: -sum_i w[y_i] logp[i, y_i] / sum_i w[y_i]
  // (PyTorch's "mean" reduction); an example whose label is ignore_index (or
  // outside [0, C): one_hot gives it a row of zeros) counts nowhere.
  r.add({.name = "nll_loss", .family = "losses",
         .summary = "negative log-likelihood of integer labels from log-probabilities, with class weights and an "
                    "ignored label",
         .inputs = {"log_probs", "labels"},
         .attrs = {{"weights", AttrKind::FloatList, false, nullptr, "one weight per class (default: all 1)"},
                   {"ignore_index", AttrKind::Int, false, -100, "examples with this label count nowhere"}},
         .shape_rule = "log_probs: [N,C], labels: i32|i64[N] -> scalar",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           auto lt = b.type(in[0]), yt = b.type(in[1]);
           require(lt.rank() == 2 && is_float(lt.dtype), "log_probs must be a float [N, C] matrix, got " + type_str(lt));
           require((yt.dtype == DType::i32 || yt.dtype == DType::i64) && yt.rank() == 1,
                   "labels must be i32[N] or i64[N], got " + type_str(yt));
           require(yt.shape[0] == lt.shape[0], "labels " + type_str(yt) + " and log_probs " + type_str(lt) + " differ in batch size");
           const int64_t classes = lt.shape[1];
           NodeId onehot = b.add("one_hot", {in[1]}, {{"depth", classes}, {"dtype", dtype_name(lt.dtype)}});
           NodeId kept = b.add("cast", {b.add("compare", {in[1], b.scalar_like(a.at("ignore_index").get<double>(), in[1])},
                                              {{"kind", "ne"}})},
                               {{"dtype", dtype_name(lt.dtype)}});
           onehot = b.add2("mul", onehot, b.add("reshape", {kept}, {{"shape", Shape{yt.shape[0], 1}}}));
           if (a.contains("weights")) {
             auto w = a.at("weights").get<std::vector<double>>();
             if (static_cast<int64_t>(w.size()) != classes) {
               OpError e("attribute 'weights': " + std::to_string(w.size()) + " weights for " + std::to_string(classes) + " classes");
               e.attr_problems = {{"weights", e.what()}};
               throw e;
             }
             onehot = b.add2("mul", onehot, b.constant_tensor(w, {classes}, lt.dtype));
           }
           NodeId picked = b.add("reduce_sum", {b.add2("mul", onehot, in[0])});
           return b.add1("neg", b.add2("div", picked, b.add("reduce_sum", {onehot})));
         },
         .pattern = OpPattern::opaque,
         .index_bound = [](const Graph& g, const Node& n, int k) -> int64_t {
           return k == 1 ? g.node(n.inputs[0]).type.shape.back() : 0;
         },
         .samples = {{{{{-1, 17}, -3, 0}, {{-1}, 0, 17, DType::i32}}},
                     {{{{-1, 4}, -3, 0}, {{-1}, 0, 4, DType::i64}}, {{"weights", {0.5, 1, 2, 1.5}}, {"ignore_index", 2}}}}});

  r.add({.name = "binary_cross_entropy", .family = "losses",
         .summary = "mean of max(x,0) - x*z + log(1 + exp(-|x|)) (from logits, stable)",
         .inputs = {"logits", "labels"},
         .shape_rule = "logits: [N,...], labels: same shape (0/1) -> scalar",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs&) {
           auto lt = b.type(in[0]);
           require(is_float(lt.dtype), "logits must be float, got " + type_str(lt));
           require(lt.shape == b.type(in[1]).shape,
                   "logits " + type_str(lt) + " and labels " + type_str(b.type(in[1])) + " differ in shape");
           NodeId x = in[0], z = float_labels(b, in[1], lt.dtype);
           NodeId zero = b.scalar_like(0.0, x), one = b.scalar_like(1.0, x);
           NodeId absx = b.add2("maximum", x, b.add1("neg", x));
           NodeId softplus = b.add1("log", b.add2("add", one, b.add1("exp", b.add1("neg", absx))));
           NodeId per = b.add2("add", b.add2("sub", b.add2("maximum", x, zero), b.add2("mul", x, z)), softplus);
           return batch_mean(b, sum_per_example(b, per));
         },
         .pattern = OpPattern::opaque,
         .samples = {{{{{-1, 17}, -3, 3}, {{-1, 17}, 0, 1}}}}});

  r.add({.name = "l2_penalty", .family = "losses",
         .summary = "reg * sum of squares of every input (weights and kernels, not biases)",
         .inputs = {"w"}, .variadic = true,
         .attrs = {{"reg", AttrKind::Float, true, nullptr, "the coefficient", {}, 0, 1e6}},
         .shape_rule = "w...: any float -> scalar",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           require(!in.empty(), "l2_penalty needs at least one tensor");
           NodeId total = kNoNode;
           for (NodeId w : in) {
             NodeId s = b.add("reduce_sum", {b.add1("square", w)});
             total = total == kNoNode ? s : b.add2("add", total, s);
           }
           return b.add2("mul", b.constant(a.at("reg").get<double>(), b.type(in[0]).dtype), total);
         },
         .pattern = OpPattern::opaque,
         .samples = {{{{{17, 5}}, {{3, 3, 2, 4}}}, {{"reg", 0.01}}}}});

  r.add({.name = "correct_count", .family = "losses",
         .summary = "how many predictions in the batch are right (f32 scalar; a metric, no gradient)",
         .inputs = {"logits", "labels"},
         .attrs = {{"labels", AttrKind::Enum, false, "sparse", "label encoding", {"sparse", "onehot", "binary"}}},
         .shape_rule = "logits: [N,C], labels: i32[N] | [N,C] one-hot | [N,1] 0/1 -> f32 scalar",
         .expand = [](GraphBuilder& b, const std::vector<NodeId>& in, const Attrs& a) {
           std::string kind = a.at("labels");
           NodeId hit;
           if (kind == "binary") {
             NodeId pred = b.add("compare", {in[0], b.scalar_like(0.0, in[0])}, {{"kind", "gt"}});
             NodeId z = float_labels(b, in[1], b.type(in[0]).dtype);
             NodeId truth = b.add("compare", {z, b.scalar_like(0.5, z)}, {{"kind", "gt"}});
             require(b.type(pred).shape == b.type(truth).shape, "logits and labels differ in shape");
             hit = b.add("compare", {b.add("cast", {pred}, {{"dtype", "i32"}}), b.add("cast", {truth}, {{"dtype", "i32"}})},
                         {{"kind", "eq"}});
           } else {
             NodeId pred = b.add("argmax", {in[0]}, {{"axis", -1}});
             NodeId truth = kind == "onehot" ? b.add("argmax", {in[1]}, {{"axis", -1}}) : in[1];
             require(b.type(truth).dtype == DType::i32 && b.type(truth).shape == b.type(pred).shape,
                     "labels " + type_str(b.type(in[1])) + " do not match logits " + type_str(b.type(in[0])));
             hit = b.add("compare", {pred, truth}, {{"kind", "eq"}});
           }
           return b.add("reduce_sum", {b.add("cast", {hit}, {{"dtype", "f32"}})});
         },
         .pattern = OpPattern::opaque,
         .index_bound = [](const Graph& g, const Node& n, int k) -> int64_t {
           return k == 1 && n.attrs.value("labels", std::string("sparse")) == "sparse" ? g.node(n.inputs[0]).type.shape.back() : 0;
         },
         .samples = {{{{{-1, 17}}, {{-1}, 0, 17, DType::i32}}},
                     {{{{-1, 17}}, {{-1, 17}, 0, 1}}, {{"labels", "onehot"}}},
                     {{{{-1, 1}}, {{-1, 1}, 0, 1}}, {{"labels", "binary"}}}}});
}

// ---- gradient rules (compiler/autodiff calls them) ----
static void add_loss_gradients(OpRegistry& r) {
}

// ---- reference kernels (compiler/interp runs them) ----
static void add_loss_reference(OpRegistry& r) {
}

// ---- lowering to loop IR (compiler/lower) ----
static void add_loss_lowering(OpRegistry& r) {
}

// One registration for the family: its ops, then their gradients, reference
// kernels and lowerings.
void register_loss_family(OpRegistry& r) {
  add_loss_ops(r);
  add_loss_gradients(r);
  add_loss_reference(r);
  add_loss_lowering(r);
}

}  // namespace kiln
