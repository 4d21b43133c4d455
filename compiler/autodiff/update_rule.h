#pragma once
// Optimizers as update graphs (format "kiln.update/1"). A rule is written once
// for one param in the graph op language and instantiated for every trainable
// param; GD, momentum and Adam are rules too (built in, in the same language).
//
//   { "format": "kiln.update/1", "name": "...",
//     "hyperparameters": { "beta1": {"default": 0.9} },        // compile-time scalars
//     "state": { "m": {"init": "zeros"} },                      // per param; init zeros | param (a copy)
//     "pre":    { "nodes": [...], "outputs": {"param": "n", "m": "n2"} },  // optional
//     "update": { "nodes": [...], "outputs": {"param": "n3", "m": "n4"} } }
//
// Names a stage can read: "param" (the param's current value; in "update",
// the value "pre" gave it), "grad" (update only: d loss / d param, computed at
// the param value "pre" produced), "lr" (the learning-rate input, f32 scalar),
// "t" (the 1-based step number as f32), every hyperparameter and state name
// (state as "pre" left it), and earlier nodes of the stage. A node input may
// also be a number (a scalar constant of the param's dtype). "pre" runs BEFORE
// the loss and gradient are computed: the forward pass sees its "param".
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "compiler/frontend/diagnostics.h"
#include "compiler/ir/graph.h"

namespace kiln {

class GraphBuilder;

constexpr const char* kUpdateFormat = "kiln.update/1";

struct UpdateStateDecl {
  std::string name;
  std::string init;  // "zeros" or "param" (starts as a copy of the param's initial value)
};

struct UpdateRule {
  std::string name;
  std::string source;  // file path, or "built-in"
  std::vector<std::pair<std::string, double>> hyperparameters;  // name -> default
  std::vector<UpdateStateDecl> state;
  nlohmann::json pre;     // null when the rule has no pre stage
  nlohmann::json update;  // {"nodes": [...], "outputs": {...}}
};

// Parses and checks a rule (every problem located, thrown as GraphError), and
// builds it once for a small param, so a type error is reported at load time.
UpdateRule parse_update_rule(const std::string& text, const std::string& file);
UpdateRule load_update_rule(const std::string& path);
// Built in: "gd"; Keras' "momentum" (v <- mu v - lr g; p <- p + v) and
// "adam"; PyTorch's "sgd" (momentum, dampening), "sgd_nesterov" and "adamw"
// (torch.optim.AdamW; Adam when the spec's weight decay is 0).
UpdateRule builtin_update_rule(const std::string& kind);
bool is_builtin_update_rule(const std::string& kind);
std::string builtin_update_rule_names();  // "adam, adamw, ..." for messages

// The defaults, overridden by `overrides`; throws std::invalid_argument naming
// an override the rule does not declare.
std::map<std::string, double> resolve_hyperparameters(const UpdateRule& rule,
                                                      const std::map<std::string, double>& overrides);

struct UpdateBindings {
  NodeId param = kNoNode;
  NodeId grad = kNoNode;  // kNoNode in the pre stage
  NodeId lr = kNoNode;
  NodeId t = kNoNode;
  std::map<std::string, NodeId> state;
  std::map<std::string, double> hyperparameters;
  // Hyperparameters fed at every step (a schedule drives them, e.g. one-cycle
  // momentum): f32 scalar inputs that replace the compile-time value.
  std::map<std::string, NodeId> hyperparameter_inputs;
};

// Builds `stage` ("pre" or "update") of the rule for one param; returns its
// outputs ("param" and state names) -> nodes. Throws OpError naming the
// rule, stage and node on a type error.
std::map<std::string, NodeId> build_update_stage(GraphBuilder& b, const UpdateRule& rule, const std::string& stage,
                                                 const UpdateBindings& bindings);

}  // namespace kiln
