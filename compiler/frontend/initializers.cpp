#include "compiler/frontend/initializers.h"

#include "compiler/ops/registry.h"
#include "runtime/init/initializers.h"

namespace kiln {

static const std::vector<AttrSpec>& specs_for(const std::string& kind) {
  static const std::map<std::string, std::vector<AttrSpec>> table = {
      {"zeros", {}},
      {"ones", {}},
      {"constant", {{"value", AttrKind::Float, true, nullptr, "the value"}}},
      {"normal", {{"mean", AttrKind::Float, false, 0.0, "mean"}, {"stddev", AttrKind::Float, false, 1.0, "standard deviation", {}, 0, 1e6}}},
      {"uniform", {{"min", AttrKind::Float, false, -0.05, "lower bound"}, {"max", AttrKind::Float, false, 0.05, "upper bound"}}},
      {"he_normal", {}},
      {"glorot_uniform", {}},
  };
  auto it = table.find(kind);
  if (it == table.end()) {
    std::vector<std::string> names;
    for (auto& [k, v] : table) names.push_back(k);
    std::string hint = closest_name(kind, names);
    std::string all;
    for (auto& n : names) all += (all.empty() ? "" : ", ") + n;
    throw OpError("unknown initializer '" + kind + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                  "; known: " + all);
  }
  return it->second;
}

nlohmann::json normalize_initializer(const nlohmann::json& spec, uint64_t default_seed) {
  nlohmann::json obj;
  if (spec.is_string()) obj = {{"kind", spec}};
  else if (spec.is_object()) obj = spec;
  else throw OpError("an initializer is a name (\"he_normal\") or an object ({\"kind\": \"normal\", \"stddev\": 0.01}), got " + spec.dump());
  if (!obj.contains("kind") || !obj["kind"].is_string()) throw OpError("initializer needs a \"kind\" string");
  std::string kind = obj["kind"];
  auto specs = specs_for(kind);
  specs.push_back({"kind", AttrKind::String, true, nullptr, "initializer name"});
  specs.push_back({"seed", AttrKind::Int, false, nullptr, "random seed", {}, 0, 9.0e15});
  nlohmann::json out = check_attrs("initializer " + kind, specs, obj);
  if (!out.contains("seed")) out["seed"] = default_seed;
  return out;
}

uint64_t param_seed(uint64_t graph_seed, const std::string& name) { return init::param_seed(graph_seed, name); }

}  // namespace kiln
