#pragma once
// Initializer specs as written in a graph: "he_normal" or {"kind": "normal", "stddev": 0.01}.
// The frontend normalizes them to an object; runtime/init draws the values.
#include <nlohmann/json.hpp>
#include <string>

namespace kiln {

// Returns the normalized object ({"kind": ..., parameters..., "seed": ...}) or
// throws OpError saying what is wrong. `default_seed` is used when none is given.
nlohmann::json normalize_initializer(const nlohmann::json& spec, uint64_t default_seed);

// A per-param seed derived from the graph seed and the param name (stable across runs and platforms).
uint64_t param_seed(uint64_t graph_seed, const std::string& param_name);

}  // namespace kiln
