#pragma once
// Layer sugar: {"layer": "conv2d", "filters": 32, ...} expands to primitives
// and creates the layer's params ("<layer>/kernel", "<layer>/bias").
#include <functional>
#include <string>
#include <vector>

#include "compiler/ir/builder.h"
#include "compiler/ops/registry.h"

namespace kiln {

struct LayerCtx {
  GraphBuilder& b;
  const std::string& name;
  NodeId input;
  const Attrs& attrs;        // checked and defaulted
  uint64_t graph_seed;
  std::vector<NodeId> params;  // filled by make_param, for the summary
  std::vector<NodeId> extra_inputs = {};  // after the first (a layer with max_inputs > 1)
  NodeId make_param(const std::string& suffix, Shape shape, const nlohmann::json& init);
  // A non-trainable param the train step updates (running statistics).
  NodeId make_state(const std::string& suffix, Shape shape, const nlohmann::json& init);
};

struct LayerDef {
  std::string name;
  std::string summary;
  std::vector<AttrSpec> attrs;
  std::function<NodeId(LayerCtx&)> expand;
  int max_inputs = 1;  // multi_head_attention also reads an additive mask
};

const std::vector<LayerDef>& layer_defs();
// Normalization, dropout, embedding and attention (layers_blocks.cpp).
std::vector<LayerDef> block_layer_defs();
// Accepts "he_normal" as shorthand for {"kind": "he_normal"} in kernel_init/bias_init.
Attrs normalize_layer_attrs(const Attrs& raw);
// Checks a layer's attributes as written (types, ranges, windows, initializers)
// and fills in defaults. Throws OpError with one problem per faulty attribute.
Attrs check_layer_attrs(const LayerDef& def, const Attrs& raw);
const LayerDef* find_layer(std::string_view name);

// "linear" and every op the registry marks as an activation.
std::vector<std::string> activation_names();
// A name ("relu") or an object with the op's attributes ({"kind": "leaky_relu", "alpha": 0.1}).
NodeId apply_activation(GraphBuilder& b, NodeId x, const nlohmann::json& activation);

}  // namespace kiln
