#include "compiler/frontend/layers.h"

#include <algorithm>

#include "compiler/frontend/initializers.h"

namespace kiln {

std::vector<std::string> activation_names() {
  std::vector<std::string> names{"linear"};
  for (const OpDef& d : OpRegistry::get().all())
    if (d.activation) names.push_back(d.name);
  return names;
}

// "relu", or {"kind": "leaky_relu", "alpha": 0.1}: the op's own attributes
// are checked by the op; a problem is reported at the activation attribute.
NodeId apply_activation(GraphBuilder& b, NodeId x, const nlohmann::json& activation) {
  auto refuse = [](const std::string& why) {
    OpError e("attribute 'activation': " + why);
    e.attr_problems = {{"activation", e.what()}};
    throw e;
  };
  const auto names = activation_names();
  auto known = [&](const std::string& n) {
    if (std::find(names.begin(), names.end(), n) != names.end()) return;
    std::string list, hint = closest_name(n, names);
    for (auto& a : names) list += (list.empty() ? "" : ", ") + a;
    refuse("unknown activation '" + n + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)") + "; one of " + list);
  };
  Attrs attrs = Attrs::object();
  std::string kind;
  if (activation.is_string()) {
    kind = activation.get<std::string>();
  } else if (activation.is_object() && activation.contains("kind") && activation["kind"].is_string()) {
    kind = activation["kind"].get<std::string>();
    for (auto& [k, v] : activation.items())
      if (k != "kind") attrs[k] = v;
  } else {
    refuse("expected an activation's name or an object {\"kind\": name, ...its attributes}, got " + activation.dump());
  }
  known(kind);
  if (kind == "linear") {
    if (!attrs.empty()) refuse("'linear' takes no attributes");
    return x;
  }
  try {
    return b.add(kind, {x}, attrs);
  } catch (const OpError& e) {
    refuse(kind + ": " + e.what());
  }
  return x;
}

NodeId LayerCtx::make_param(const std::string& suffix, Shape shape, const nlohmann::json& init) {
  std::string pname = name + "/" + suffix;
  auto init_obj = normalize_initializer(init, param_seed(graph_seed, pname));
  Attrs a = {{"init", init_obj}, {"trainable", attrs.value("trainable", true)}};
  NodeId id = b.param(pname, {DType::f32, std::move(shape)}, a);
  params.push_back(id);
  return id;
}

NodeId LayerCtx::make_state(const std::string& suffix, Shape shape, const nlohmann::json& init) {
  std::string pname = name + "/" + suffix;
  NodeId id = b.param(pname, {DType::f32, std::move(shape)}, {{"init", normalize_initializer(init, 0)}, {"trainable", false}});
  params.push_back(id);
  return id;
}

// A window or stride: one integer for both spatial dimensions, or [h, w].
static std::vector<int64_t> pair_of(const Attrs& a, const char* key) {
  const auto& v = a.at(key);
  std::vector<nlohmann::json> items = v.is_array() ? std::vector<nlohmann::json>(v.begin(), v.end())
                                                   : std::vector<nlohmann::json>{v, v};
  bool ok = items.size() == 2;
  for (auto& d : items) ok = ok && d.is_number_integer() && d.get<double>() >= 1 && d.get<double>() <= 65536;
  if (!ok) {
    std::string msg = std::string("attribute '") + key + "': expected one integer in [1, 65536] or a pair [h, w] of them, got " + v.dump();
    OpError e(msg);
    e.attr_problems = {{key, msg}};
    throw e;
  }
  return {items[0].get<int64_t>(), items[1].get<int64_t>()};
}

static AttrSpec activation_attr() {
  return {"activation", AttrKind::Json, false, "linear",
          "activation applied after the layer: a name, or {\"kind\": name, ...its attributes}"};
}
static AttrSpec padding_attr() {
  return {"padding", AttrKind::Json, false, "valid", "\"valid\", \"same\" (TF) or [top, left, bottom, right]"};
}

// A layer's output: y plus a bias of `channels` (when use_bias), then its activation.
static NodeId biased_activation(LayerCtx& c, NodeId y, int64_t channels) {
  if (c.attrs.at("use_bias")) y = c.b.add2("add", y, c.make_param("bias", {channels}, c.attrs.at("bias_init")));
  return apply_activation(c.b, y, c.attrs.at("activation"));
}

// A pooling layer's op attributes: windows as pairs, padding and ceil_mode as written.
static Attrs pool_op_attrs(const LayerCtx& c) {
  Attrs a = {{"pool", pair_of(c.attrs, "pool")}, {"padding", c.attrs.at("padding")}, {"ceil_mode", c.attrs.at("ceil_mode")}};
  if (c.attrs.contains("strides")) a["strides"] = pair_of(c.attrs, "strides");
  return a;
}

static AttrSpec trainable_attr() { return {"trainable", AttrKind::Bool, false, true, "params receive gradients by default"}; }
static AttrSpec init_attr(const char* name, const char* def) {
  return {name, AttrKind::Object, false, nlohmann::json{{"kind", def}}, "initializer (name or object)"};
}

// Accept "he_normal" as shorthand for {"kind": "he_normal"} before the attrs are checked.
Attrs normalize_layer_attrs(const Attrs& raw) {
  Attrs a = raw;
  for (const char* k : {"kernel_init", "bias_init", "embeddings_init"})
    if (a.contains(k) && a[k].is_string()) a[k] = {{"kind", a[k]}};
  return a;
}

Attrs check_layer_attrs(const LayerDef& def, const Attrs& raw) {
  Attrs a = check_attrs(def.name + " layer", def.attrs, normalize_layer_attrs(raw));
  std::vector<std::pair<std::string, std::string>> problems;
  for (const char* key : {"kernel", "strides", "pool", "dilations"}) {
    if (!a.contains(key) || a[key].is_null()) continue;
    try {
      pair_of(a, key);
    } catch (const OpError& e) {
      problems.insert(problems.end(), e.attr_problems.begin(), e.attr_problems.end());
    }
  }
  for (const char* key : {"kernel_init", "bias_init", "embeddings_init"}) {
    if (!a.contains(key)) continue;
    try {
      normalize_initializer(a[key], 0);
    } catch (const OpError& e) {
      problems.push_back({key, std::string("attribute '") + key + "': " + e.what()});
    }
  }
  if (!problems.empty()) {
    OpError e(problems[0].second);
    e.attr_problems = std::move(problems);
    throw e;
  }
  return a;
}

const std::vector<LayerDef>& layer_defs() {
  static const std::vector<LayerDef> defs = {
      {"dense", "x @ kernel + bias over the last axis ([N, ..., K] -> [N, ..., units]), then the activation",
       {{"units", AttrKind::Int, true, nullptr, "output features", {}, 1, 1 << 24}, activation_attr(),
        {"use_bias", AttrKind::Bool, false, true, "add a bias"},
        init_attr("kernel_init", "glorot_uniform"), init_attr("bias_init", "zeros"), trainable_attr()},
       [](LayerCtx& c) {
         const auto& xt = c.b.type(c.input);
         if (xt.rank() < 2) throw OpError("dense needs a [N, ..., K] input, got " + type_str(xt));
         int64_t units = c.attrs.at("units");
         NodeId w = c.make_param("kernel", {xt.shape.back(), units}, c.attrs.at("kernel_init"));
         NodeId y = c.b.add2("matmul", c.input, w);
         return biased_activation(c, y, units);
       }},
      {"conv2d", "2-D convolution (NHWC) + bias, then the activation",
       {{"filters", AttrKind::Int, true, nullptr, "output channels", {}, 1, 1 << 16},
        {"kernel", AttrKind::Tensor, true, nullptr, "window size: k or [kh, kw]"},
        {"strides", AttrKind::Tensor, false, 1, "stride: s or [sh, sw]"},
        {"dilations", AttrKind::Tensor, false, 1, "dilation: d or [dh, dw]"}, padding_attr(),
        {"groups", AttrKind::Int, false, 1, "channel groups (filters and input channels divisible by it)", {}, 1, 1 << 16},
        activation_attr(),
        {"use_bias", AttrKind::Bool, false, true, "add a bias"},
        init_attr("kernel_init", "glorot_uniform"), init_attr("bias_init", "zeros"), trainable_attr()},
       [](LayerCtx& c) {
         const auto& xt = c.b.type(c.input);
         if (xt.rank() != 4) throw OpError("conv2d needs an NHWC input, got " + type_str(xt));
         auto k = pair_of(c.attrs, "kernel");
         auto s = pair_of(c.attrs, "strides"), d = pair_of(c.attrs, "dilations");
         int64_t f = c.attrs.at("filters");
         const int64_t groups = c.attrs.at("groups");
         if (xt.shape[3] % groups != 0)
           throw OpError("attribute 'groups': " + std::to_string(groups) + " groups do not divide the input's " +
                         std::to_string(xt.shape[3]) + " channels");
         NodeId w = c.make_param("kernel", {k[0], k[1], xt.shape[3] / groups, f}, c.attrs.at("kernel_init"));
         NodeId y = c.b.add("conv2d", {c.input, w}, {{"strides", s}, {"dilations", d}, {"padding", c.attrs.at("padding")},
                                                     {"groups", groups}});
         return biased_activation(c, y, f);
       }},
      {"depthwise_conv2d", "each channel convolved with its own depth_multiplier filters (NHWC) + bias, then the activation",
       {{"kernel", AttrKind::Tensor, true, nullptr, "window size: k or [kh, kw]"},
        {"depth_multiplier", AttrKind::Int, false, 1, "outputs per input channel", {}, 1, 1 << 10},
        {"strides", AttrKind::Tensor, false, 1, "stride: s or [sh, sw]"},
        {"dilations", AttrKind::Tensor, false, 1, "dilation: d or [dh, dw]"}, padding_attr(), activation_attr(),
        {"use_bias", AttrKind::Bool, false, true, "add a bias"},
        init_attr("kernel_init", "glorot_uniform"), init_attr("bias_init", "zeros"), trainable_attr()},
       [](LayerCtx& c) {
         const auto& xt = c.b.type(c.input);
         if (xt.rank() != 4) throw OpError("depthwise_conv2d needs an NHWC input, got " + type_str(xt));
         auto k = pair_of(c.attrs, "kernel");
         const int64_t channels = xt.shape[3], f = channels * c.attrs.at("depth_multiplier").get<int64_t>();
         NodeId w = c.make_param("kernel", {k[0], k[1], 1, f}, c.attrs.at("kernel_init"));
         NodeId y = c.b.add("conv2d", {c.input, w},
                            {{"strides", pair_of(c.attrs, "strides")}, {"dilations", pair_of(c.attrs, "dilations")},
                             {"padding", c.attrs.at("padding")}, {"groups", channels}});
         return biased_activation(c, y, f);
       }},
      {"conv1d", "1-D convolution (NWC) + bias, then the activation",
       {{"filters", AttrKind::Int, true, nullptr, "output channels", {}, 1, 1 << 16},
        {"kernel", AttrKind::Int, true, nullptr, "window width", {}, 1, 1 << 16},
        {"strides", AttrKind::Int, false, 1, "stride", {}, 1, 1 << 16},
        {"dilations", AttrKind::Int, false, 1, "dilation", {}, 1, 1 << 16},
        {"padding", AttrKind::Json, false, "valid", "\"valid\", \"same\" or [left, right]"}, activation_attr(),
        {"use_bias", AttrKind::Bool, false, true, "add a bias"},
        init_attr("kernel_init", "glorot_uniform"), init_attr("bias_init", "zeros"), trainable_attr()},
       [](LayerCtx& c) {
         const auto& xt = c.b.type(c.input);
         if (xt.rank() != 3) throw OpError("conv1d needs an NWC input [N, W, C], got " + type_str(xt));
         int64_t f = c.attrs.at("filters");
         NodeId w = c.make_param("kernel", {c.attrs.at("kernel").get<int64_t>(), xt.shape[2], f}, c.attrs.at("kernel_init"));
         NodeId y = c.b.add("conv1d", {c.input, w}, {{"strides", {c.attrs.at("strides")}},
                                                     {"dilations", {c.attrs.at("dilations")}}, {"padding", c.attrs.at("padding")}});
         return biased_activation(c, y, f);
       }},
      {"conv2d_transpose", "transposed 2-D convolution (NHWC; kernel [kh, kw, filters, C]) + bias, then the activation",
       {{"filters", AttrKind::Int, true, nullptr, "output channels", {}, 1, 1 << 16},
        {"kernel", AttrKind::Tensor, true, nullptr, "window size: k or [kh, kw]"},
        {"strides", AttrKind::Tensor, false, 1, "stride: s or [sh, sw]"}, padding_attr(),
        {"output_padding", AttrKind::IntList, false, nlohmann::json::array({0, 0}), "[oh, ow] extra rows/columns", {}, 0, 1024},
        activation_attr(), {"use_bias", AttrKind::Bool, false, true, "add a bias"},
        init_attr("kernel_init", "glorot_uniform"), init_attr("bias_init", "zeros"), trainable_attr()},
       [](LayerCtx& c) {
         const auto& xt = c.b.type(c.input);
         if (xt.rank() != 4) throw OpError("conv2d_transpose needs an NHWC input, got " + type_str(xt));
         auto k = pair_of(c.attrs, "kernel");
         int64_t f = c.attrs.at("filters");
         NodeId w = c.make_param("kernel", {k[0], k[1], f, xt.shape[3]}, c.attrs.at("kernel_init"));
         NodeId y = c.b.add("conv2d_transpose", {c.input, w},
                            {{"strides", pair_of(c.attrs, "strides")}, {"padding", c.attrs.at("padding")},
                             {"output_padding", c.attrs.at("output_padding")}});
         return biased_activation(c, y, f);
       }},
      {"maxpool2d", "max pooling (NHWC)",
       {{"pool", AttrKind::Tensor, false, 2, "window: p or [ph, pw]"},
        {"strides", AttrKind::Tensor, false, nullptr, "stride (default: the window)"}, padding_attr(),
        {"ceil_mode", AttrKind::Bool, false, false, "a partial last window counts"}},
       [](LayerCtx& c) { return c.b.add("maxpool2d", {c.input}, pool_op_attrs(c)); }},
      {"avgpool2d", "average pooling (NHWC)",
       {{"pool", AttrKind::Tensor, false, 2, "window: p or [ph, pw]"},
        {"strides", AttrKind::Tensor, false, nullptr, "stride (default: the window)"}, padding_attr(),
        {"ceil_mode", AttrKind::Bool, false, false, "a partial last window counts"},
        {"count_include_pad", AttrKind::Bool, false, false, "divide by the taps on the padding too"}},
       [](LayerCtx& c) {
         Attrs a = pool_op_attrs(c);
         a["count_include_pad"] = c.attrs.at("count_include_pad");
         return c.b.add("avgpool2d", {c.input}, a);
       }},
      {"global_avgpool2d", "mean over H and W: [N, H, W, C] -> [N, C]", {},
       [](LayerCtx& c) { return c.b.add("global_avgpool2d", {c.input}); }},
      {"flatten", "[N, ...] -> [N, prod(...)]", {},
       [](LayerCtx& c) {
         const auto& xt = c.b.type(c.input);
         if (xt.rank() < 1) throw OpError("flatten needs a batch dimension");
         Shape rest(xt.shape.begin() + 1, xt.shape.end());
         return c.b.add("reshape", {c.input}, {{"shape", Shape{xt.shape[0], numel(rest)}}});
       }},
      {"activation", "an activation on its own",
       {{"activation", AttrKind::Json, true, nullptr, "which: a name, or {\"kind\": name, ...its attributes}"}},
       [](LayerCtx& c) { return apply_activation(c.b, c.input, c.attrs.at("activation")); }},
  };
  static const std::vector<LayerDef> all = [] {
    std::vector<LayerDef> v = defs;
    for (LayerDef& d : block_layer_defs()) v.push_back(std::move(d));
    return v;
  }();
  return all;
}

const LayerDef* find_layer(std::string_view name) {
  for (auto& d : layer_defs()) if (d.name == name) return &d;
  return nullptr;
}

}  // namespace kiln
