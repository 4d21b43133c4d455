#include "compiler/passes/modes.h"

#include "compiler/ir/builder.h"
#include "compiler/passes/graph_edit.h"

namespace kiln {

static const OpDef* mode_op(const Node& n) {
  const OpDef* def = OpRegistry::get().find(n.op);
  return def && def->by_mode ? def : nullptr;
}

bool has_modes(const Graph& g) {
  for (const Node& n : g.nodes)
    if (mode_op(n)) return true;
  return false;
}

uint64_t graph_seed(const Graph& g) {
  const auto& seed = g.source.is_object() ? g.source.value("seed", nlohmann::json(0)) : nlohmann::json(0);
  return seed.is_number_unsigned() || seed.is_number_integer() ? seed.get<uint64_t>() : 0;
}

bool specialize_mode(Graph& g, const ModeCtx& ctx) {
  GraphBuilder b(g);
  const size_t count = g.nodes.size();
  bool changed = false;
  for (size_t i = 0; i < count; ++i) {
    const Node& n = g.nodes[i];
    const OpDef* def = mode_op(n);
    if (!def) continue;
    const NodeId id = static_cast<NodeId>(i);
    const std::string name = n.name;
    b.set_origin(n.origin);
    NodeId value;
    {
      ScopeGuard scope(b, name);
      value = def->by_mode(b, id, ctx);
    }
    g.node(id).name = name + "#" + (ctx.mode == Mode::train ? "train" : "infer");
    if (value != id && static_cast<size_t>(value) >= count && g.find(name) == kNoNode) g.node(value).name = name;
    replace_uses(g, id, value);
    changed = true;
  }
  b.set_origin("");
  if (changed) settle_appended_replacements(g);
  return changed;
}

}  // namespace kiln
