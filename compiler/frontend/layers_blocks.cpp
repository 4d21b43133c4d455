// Layers of real models beyond dense and convolution: normalization (batch,
// layer, group), dropout, embedding and multi-head self-attention. Each
// creates its params and expands to registry ops, so autodiff differentiates
// it and the train step compiles its training form.
#include <cmath>

#include "compiler/frontend/layers.h"

namespace kiln {

namespace {

AttrSpec trainable() { return {"trainable", AttrKind::Bool, false, true, "params receive gradients by default"}; }
AttrSpec epsilon() { return {"epsilon", AttrKind::Float, false, 1e-5, "added to the variance", {}, 0}; }
AttrSpec channel_axis() { return {"axis", AttrKind::Int, false, -1, "the channel axis (-1: NHWC, 1: NCHW)", {}, -64, 63}; }
AttrSpec init(const char* name, const char* kind) {
  return {name, AttrKind::Object, false, nlohmann::json{{"kind", kind}}, "initializer (name or object)"};
}

int64_t channels_of(const LayerCtx& c, const char* layer) {
  const TensorType t = c.b.type(c.input);
  const int axis = normalize_axis(c.attrs.at("axis").get<int64_t>(), t.rank());
  const int64_t ch = t.shape[static_cast<size_t>(axis)];
  if (ch == kOpenDim) throw OpError(std::string(layer) + ": the channel axis is the open batch dimension");
  return ch;
}

// x [N, T, D] -> [N, heads, T, key_dim] from x @ w (+ b).
NodeId heads_of(GraphBuilder& b, NodeId x, NodeId w, NodeId bias, int64_t heads, int64_t key_dim) {
  const Shape xs = b.type(x).shape;
  NodeId y = b.add2("matmul", x, w);
  if (bias != kNoNode) y = b.add2("add", y, bias);
  y = b.add("reshape", {y}, {{"shape", Shape{xs[0], xs[1], heads, key_dim}}});
  return b.add("transpose", {y}, {{"perm", {0, 2, 1, 3}}});
}

NodeId multi_head_attention(LayerCtx& c) {
  GraphBuilder& b = c.b;
  const TensorType t = b.type(c.input);
  if (t.rank() != 3 || t.shape[1] == kOpenDim || t.shape[2] == kOpenDim)
    throw OpError("multi_head_attention needs a [N, T, D] input, got " + type_str(t));
  const int64_t seq = t.shape[1], d = t.shape[2], heads = c.attrs.at("heads"),
                key_dim = c.attrs.contains("key_dim") && !c.attrs.at("key_dim").is_null() ? c.attrs.at("key_dim").get<int64_t>() : d / heads;
  if (key_dim < 1 || (!c.attrs.contains("key_dim") && d % heads != 0))
    throw OpError("attribute 'heads': " + std::to_string(heads) + " heads do not divide the model width " + std::to_string(d) +
                  " (or give key_dim)");
  const bool bias = c.attrs.at("use_bias");
  const auto& kinit = c.attrs.at("kernel_init");
  // The key projection has no bias: it would add q_i . b to every score of
  // row i, which softmax ignores, so its gradient is zero (a param that never trains).
  auto projection = [&](const char* name, bool with_bias) {
    NodeId w = c.make_param(std::string(name) + "/kernel", {d, heads * key_dim}, kinit);
    NodeId bv = with_bias ? c.make_param(std::string(name) + "/bias", {heads * key_dim}, {{"kind", "zeros"}}) : kNoNode;
    return heads_of(b, c.input, w, bv, heads, key_dim);
  };
  NodeId q = projection("query", bias), k = projection("key", false), v = projection("value", bias);
  // scores[n, h, i, j] = q_i . k_j / sqrt(key_dim): one batched GEMM over (n, h).
  NodeId scores = b.add("matmul", {q, k}, {{"transpose_b", true}});
  scores = b.add2("mul", scores, b.constant(1 / std::sqrt(static_cast<double>(key_dim))));
  for (NodeId m : c.extra_inputs) scores = b.add2("add", scores, m);  // an additive mask, broadcast to [N, heads, T, T]
  // Causal: position i attends to j <= i, the softmax's own mask (no -1e9
  // constant added to the scores: the products may then skip the masked half).
  NodeId p = b.add("softmax", {scores}, {{"axis", -1}, {"causal", c.attrs.at("causal").get<bool>()}});
  if (double rate = c.attrs.at("dropout"); rate > 0) p = b.add("dropout", {p}, {{"rate", rate}});
  NodeId ctx = b.add("transpose", {b.add2("matmul", p, v)}, {{"perm", {0, 2, 1, 3}}});
  ctx = b.add("reshape", {ctx}, {{"shape", Shape{t.shape[0], seq, heads * key_dim}}});
  NodeId out = b.add2("matmul", ctx, c.make_param("output/kernel", {heads * key_dim, d}, kinit));
  if (bias) out = b.add2("add", out, c.make_param("output/bias", {d}, {{"kind", "zeros"}}));
  return out;
}

}  // namespace

std::vector<LayerDef> block_layer_defs() {
  return {
      {"batch_norm", "per-channel normalization with running statistics (gamma, beta; running_mean, running_var as state)",
       {channel_axis(), {"momentum", AttrKind::Float, false, 0.1, "running = (1 - momentum) running + momentum batch", {}, 0, 1},
        epsilon(), {"activation", AttrKind::Json, false, "linear", "activation applied after: a name or {\"kind\": ...}"},
        {"sync", AttrKind::Bool, false, false, "data-parallel training: statistics of the global batch, not the rank's shard"},
        trainable()},
       [](LayerCtx& c) {
         const int64_t ch = channels_of(c, "batch_norm");
         NodeId gamma = c.make_param("gamma", {ch}, {{"kind", "ones"}}), beta = c.make_param("beta", {ch}, {{"kind", "zeros"}});
         NodeId mean = c.make_state("running_mean", {ch}, {{"kind", "zeros"}});
         NodeId var = c.make_state("running_var", {ch}, {{"kind", "ones"}});
         NodeId y = c.b.add("batch_norm", {c.input, gamma, beta, mean, var},
                            {{"axis", c.attrs.at("axis")}, {"momentum", c.attrs.at("momentum")}, {"epsilon", c.attrs.at("epsilon")},
                             {"sync", c.attrs.at("sync")}});
         return apply_activation(c.b, y, c.attrs.at("activation"));
       }},
      {"layer_norm", "normalization over the last axes of each example, then gamma, beta",
       {{"axes", AttrKind::IntList, false, nlohmann::json::array({-1}), "the normalized axes: the last k", {}, -64, 63},
        epsilon(), trainable()},
       [](LayerCtx& c) {
         const TensorType t = c.b.type(c.input);
         const size_t k = c.attrs.at("axes").size();
         if (k < 1 || k >= t.shape.size()) throw OpError("layer_norm normalizes between 1 and rank - 1 trailing axes");
         const Shape norm(t.shape.end() - static_cast<long>(k), t.shape.end());
         NodeId gamma = c.make_param("gamma", norm, {{"kind", "ones"}}), beta = c.make_param("beta", norm, {{"kind", "zeros"}});
         return c.b.add("layer_norm", {c.input, gamma, beta}, {{"axes", c.attrs.at("axes")}, {"epsilon", c.attrs.at("epsilon")}});
       }},
      {"group_norm", "normalization over groups of channels per example, then per-channel gamma, beta",
       {{"groups", AttrKind::Int, true, nullptr, "channel groups", {}, 1}, channel_axis(), epsilon(), trainable()},
       [](LayerCtx& c) {
         const int64_t ch = channels_of(c, "group_norm");
         NodeId gamma = c.make_param("gamma", {ch}, {{"kind", "ones"}}), beta = c.make_param("beta", {ch}, {{"kind", "zeros"}});
         return c.b.add("group_norm", {c.input, gamma, beta},
                        {{"groups", c.attrs.at("groups")}, {"axis", c.attrs.at("axis")}, {"epsilon", c.attrs.at("epsilon")}});
       }},
      {"dropout", "zeroes each element with probability rate in training (survivors scaled by 1 / (1 - rate)); nothing in inference",
       {{"rate", AttrKind::Float, false, 0.5, "the probability of zeroing an element", {}, 0, 0.999}},
       [](LayerCtx& c) { return c.b.add("dropout", {c.input}, {{"rate", c.attrs.at("rate")}}); }},
      {"embedding", "integer ids [N, ...] -> rows of a [vocab, dim] table: [N, ..., dim] (its gradient a deterministic scatter-add)",
       {{"vocab", AttrKind::Int, true, nullptr, "table rows (ids 0 .. vocab-1)", {}, 1, 1 << 24},
        {"dim", AttrKind::Int, true, nullptr, "row width", {}, 1, 1 << 16}, init("embeddings_init", "normal"), trainable()},
       [](LayerCtx& c) {
         const TensorType t = c.b.type(c.input);
         if (is_float(t.dtype)) throw OpError("embedding reads integer ids, got " + type_str(t));
         NodeId table = c.make_param("embeddings", {c.attrs.at("vocab").get<int64_t>(), c.attrs.at("dim").get<int64_t>()},
                                     c.attrs.at("embeddings_init"));
         return c.b.add("gather", {table, c.input}, {{"axis", 0}});
       }},
      {"multi_head_attention", "self-attention over [N, T, D]: heads of softmax(q k^T / sqrt(key_dim)) v, batched GEMMs; "
                               "a second input is an additive mask",
       {{"heads", AttrKind::Int, true, nullptr, "attention heads", {}, 1, 1024},
        {"key_dim", AttrKind::Int, false, nullptr, "per-head width (default D / heads)", {}, 1, 1 << 16},
        {"causal", AttrKind::Bool, false, false, "position i attends only to j <= i"},
        {"dropout", AttrKind::Float, false, 0.0, "dropout on the attention weights (training)", {}, 0, 0.999},
        {"use_bias", AttrKind::Bool, false, true, "biases on the query, value and output projections (a key bias cannot train)"}, init("kernel_init", "glorot_uniform"),
        trainable()},
       multi_head_attention, 2},
  };
}

}  // namespace kiln
