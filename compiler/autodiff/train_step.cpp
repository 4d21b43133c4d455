#include "compiler/autodiff/train_step.h"

#include <fnmatch.h>

#include <set>
#include <stdexcept>

#include "compiler/autodiff/autodiff.h"
#include "compiler/ir/builder.h"
#include "compiler/passes/graph_edit.h"
#include "compiler/passes/modes.h"
#include "compiler/passes/passes.h"

namespace kiln {

TrainStepConfig train_step_config(const TrainSpec& spec) {
  TrainStepConfig config;
  config.optimizer = is_builtin_update_rule(spec.optimizer.kind) ? builtin_update_rule(spec.optimizer.kind)
                                                                 : load_update_rule(spec.optimizer.kind);
  config.hyperparameters = spec.optimizer.hyperparameters;
  const OptimizerSpec& o = spec.optimizer;
  config.weight_decay = o.weight_decay;
  config.decoupled_weight_decay =
      o.weight_decay_mode.empty() ? config.optimizer.name == "adamw" : o.weight_decay_mode == "decoupled";
  config.no_weight_decay = o.no_weight_decay;
  config.clip_grad_norm = o.clip_grad_norm;
  if (o.schedule.kind == "onecycle" && o.schedule.cycle_momentum) {
    std::string name = cycled_momentum_name(config.optimizer);
    if (name.empty())
      throw std::invalid_argument("optimizer '" + config.optimizer.name +
                                  "' has neither a momentum nor a beta1 for the one-cycle schedule to cycle");
    config.scheduled_hyperparameters.push_back(name);
  }
  return config;
}

std::string cycled_momentum_name(const UpdateRule& rule) {
  std::string found;
  for (auto& [name, value] : rule.hyperparameters)
    if (name == "momentum" || (name == "beta1" && found.empty())) found = name;
  return found;
}

std::string next_value_name(const std::string& persistent) { return persistent + "@next"; }

static NodeId required_loss(const Graph& model) {
  NodeId loss = model.output("loss");
  if (loss == kNoNode) throw std::invalid_argument("graph '" + model.name + "' has no output named \"loss\"");
  const TensorType& t = model.node(loss).type;
  if (!t.shape.empty() || !is_float(t.dtype))
    throw std::invalid_argument("graph '" + model.name + "': output \"loss\" must be a float scalar, got " + type_str(t));
  return loss;
}

namespace {

// Per trainable param: its persistent node, the value the step computes with
// (after the rule's pre stage) and its optimizer state.
struct ParamSlot {
  NodeId param, value;
  std::map<std::string, NodeId> state, state_value;
};

}  // namespace

static bool matches_any(const std::vector<std::string>& globs, const std::string& name) {
  for (const std::string& g : globs)
    if (fnmatch(g.c_str(), name.c_str(), 0) == 0) return true;
  return false;
}

static NodeId cast_like(GraphBuilder& b, NodeId x, NodeId like) {
  const DType want = b.type(like).dtype;
  return b.type(x).dtype == want ? x : b.add("cast", {x}, {{"dtype", std::string(dtype_name(want))}});
}

// grads[i] *= min(1, max_norm / (norm + 1e-6)), norm = sqrt(sum_i |g_i|^2)
// with each |g_i| a tensor's norm and the sum in param order (as
// torch.nn.utils.clip_grad_norm_ computes it): the same bits on any thread
// count, since each reduction's order is fixed by the compiled kernel.
static void clip_by_global_norm(GraphBuilder& b, std::vector<NodeId>& grads, double max_norm) {
  if (grads.empty()) return;
  NodeId total_sq = kNoNode;
  for (NodeId g : grads) {
    NodeId norm = b.add1("sqrt", b.add1("reduce_sum", b.add1("square", g)));
    NodeId sq = cast_like(b, b.add1("square", norm), grads.front());
    total_sq = total_sq == kNoNode ? sq : b.add2("add", total_sq, sq);
  }
  NodeId norm = b.add("sqrt", {total_sq}, Attrs::object(), b.scope() + "/global_norm");
  NodeId like = grads.front();
  NodeId coef = b.add2("minimum", b.add2("div", b.scalar_like(max_norm, like), b.add2("add", norm, b.scalar_like(1e-6, like))),
                       b.scalar_like(1.0, like));
  for (NodeId& g : grads) g = b.add2("mul", g, cast_like(b, coef, g));
}

// Which part of the step a graph computes: the whole step, or the two halves
// a data-parallel step runs with the gradient reduction between them.
enum class StepPart { whole, gradients, apply };

static Graph build_step(const Graph& model, const TrainStepConfig& config, StepPart part) {
  required_loss(model);
  for (const char* reserved : {kLearningRateInput, kStepCounter, kFirstSampleInput, kLossScaleInput})
    if (model.find(reserved) != kNoNode)
      throw std::invalid_argument("graph '" + model.name + "' has a node named '" + reserved +
                                  "', a name the training step reserves");
  const UpdateRule& rule = config.optimizer;
  auto hyper = resolve_hyperparameters(rule, config.hyperparameters);

  Graph s = model;
  s.name = model.name + (part == StepPart::whole ? ".train_step" : part == StepPart::gradients ? ".grad_step" : ".apply_step");
  if (!config.use_handwritten_gradients) s.gradients.clear();
  GraphBuilder b(s);
  NodeId step = b.param(kStepCounter, {DType::i64, {}},
                        {{"role", "state"}, {"trainable", false}, {"init", {{"kind", "zeros"}}}});
  NodeId first_sample = b.input(kFirstSampleInput, {DType::i64, {}});
  // Batch norm and dropout in their training form (it may add updates of running statistics).
  if (specialize_mode(s, {Mode::train, step, graph_seed(model), first_sample})) step = s.find(kStepCounter);
  // The apply half never sees the batch: the forward pass's own updates
  // (running statistics) belong to the gradient half.
  if (part == StepPart::apply) s.updates.clear();
  // The model's outputs in the training form, by id: a mode may have
  // replaced an output by an existing node (dropout at rate 0 is its input),
  // so its name alone no longer finds it.
  std::vector<std::pair<std::string, NodeId>> forward_outputs = s.outputs;
  auto forward_output = [&](const std::string& name) {
    for (auto& [n, id] : forward_outputs)
      if (n == name) return id;
    return kNoNode;
  };
  s.outputs.clear();
  const size_t model_nodes = s.nodes.size();
  NodeId lr = b.input(kLearningRateInput, {DType::f32, {}});
  std::map<std::string, NodeId> hyper_inputs;
  for (const std::string& name : config.scheduled_hyperparameters) {
    if (!hyper.count(name))
      throw std::invalid_argument("optimizer '" + rule.name + "' has no hyperparameter '" + name + "' to schedule");
    hyper.erase(name);
    hyper_inputs[name] = b.input(kHyperparameterInputPrefix + name, {DType::f32, {}});
  }
  b.set_scope("train");
  NodeId t = b.add("cast", {b.add2("add", step, b.constant(1.0, DType::i64))}, {{"dtype", "f32"}}, "t");

  std::vector<ParamSlot> slots;
  for (NodeId p : trainable_params(s)) {
    ParamSlot slot{p, p, {}, {}};
    const std::string pname = s.node(p).name;
    for (const UpdateStateDecl& st : rule.state) {
      Attrs init = st.init == "param" ? Attrs{{"kind", "copy"}, {"of", pname}} : Attrs{{"kind", "zeros"}};
      NodeId id = b.param(pname + "/" + st.name, s.node(p).type, {{"role", "state"}, {"trainable", false}, {"init", init}});
      slot.state[st.name] = slot.state_value[st.name] = id;
    }
    slots.push_back(std::move(slot));
  }

  // The pre stage changes the params before the loss sees them: the model's
  // nodes are rewired to read the pre-stage values, then re-sorted.
  if (!rule.pre.is_null()) {
    for (ParamSlot& slot : slots) {
      b.set_scope(s.node(slot.param).name + "/pre");
      UpdateBindings bind{slot.param, kNoNode, lr, t, slot.state, hyper};
      bind.hyperparameter_inputs = hyper_inputs;
      auto outs = build_update_stage(b, rule, "pre", bind);
      if (outs.count("param")) slot.value = outs["param"];
      for (auto& [name, id] : outs)
        if (name != "param") slot.state_value[name] = id;
      for (size_t i = 0; i < model_nodes; ++i)
        for (NodeId& in : s.nodes[i].inputs)
          if (in == slot.param) in = slot.value;
    }
    std::vector<NodeId> moved = topological_sort(s);
    auto remap = [&](NodeId& id) { id = moved.at(static_cast<size_t>(id)); };
    remap(lr), remap(step), remap(t);
    for (auto& [name, id] : forward_outputs) remap(id);
    for (auto& [name, id] : hyper_inputs) remap(id);
    for (ParamSlot& slot : slots) {
      remap(slot.param), remap(slot.value);
      for (auto& [n, id] : slot.state) remap(id);
      for (auto& [n, id] : slot.state_value) remap(id);
    }
  }
  const NodeId loss = forward_output("loss");
  const NodeId correct = forward_output("correct");

  std::vector<NodeId> wrt;
  for (const ParamSlot& slot : slots)
    if (part != StepPart::apply && !s.gradients.count(slot.param)) wrt.push_back(slot.value);
  NodeId objective = loss, scale = kNoNode;
  if (part == StepPart::gradients) {
    scale = b.input(kLossScaleInput, {DType::f32, {}});
    const DType lt = s.node(loss).type.dtype;
    if (lt != DType::f32) scale = b.add("cast", {scale}, {{"dtype", std::string(dtype_name(lt))}});
    objective = b.add2("mul", loss, scale);
  }
  Gradients grads = part == StepPart::apply ? Gradients{} : differentiate(s, objective, wrt);

  std::vector<NodeId> slot_grads;
  for (ParamSlot& slot : slots) {
    const std::string pname = s.node(slot.param).name;
    NodeId grad = part == StepPart::apply        ? b.input(gradient_input_name(pname), s.node(slot.param).type)
                  : s.gradients.count(slot.param) ? s.gradients.at(slot.param)
                                                  : grads.of.at(slot.value);
    if (part == StepPart::gradients) {
      // A hand-written gradient is the unscaled loss's.
      if (s.gradients.count(slot.param)) grad = b.add2("mul", grad, scale);
      s.outputs.push_back({gradient_input_name(pname), grad});
    }
    slot_grads.push_back(grad);
  }
  if (part != StepPart::gradients) {
    if (config.clip_grad_norm > 0) {
      b.set_scope("train/clip");
      clip_by_global_norm(b, slot_grads, config.clip_grad_norm);
    }
    for (size_t i = 0; i < slots.size(); ++i) {
      ParamSlot& slot = slots[i];
      const std::string pname = s.node(slot.param).name;
      b.set_scope(pname + "/update");
      NodeId grad = slot_grads[i], param = slot.value;
      if (config.weight_decay > 0 && !matches_any(config.no_weight_decay, pname)) {
        NodeId decay = b.scalar_like(config.weight_decay, param);
        if (config.decoupled_weight_decay) {  // p * (1 - lr * wd), as AdamW
          NodeId keep = b.add2("sub", b.scalar_like(1.0, param), b.add2("mul", cast_like(b, lr, param), decay));
          param = b.add2("mul", param, keep);
        } else {
          grad = b.add2("add", grad, b.add2("mul", decay, param));
        }
      }
      UpdateBindings bind{param, grad, lr, t, slot.state_value, hyper};
      bind.hyperparameter_inputs = hyper_inputs;
      auto outs = build_update_stage(b, rule, "update", bind);
      s.updates.push_back({slot.param, outs.at("param")});
      for (auto& [name, state] : slot.state) {
        NodeId final_value = outs.count(name) ? outs.at(name) : slot.state_value.at(name);
        if (final_value != state) s.updates.push_back({state, final_value});
      }
    }
  }
  b.set_scope("train");
  if (part != StepPart::gradients) s.updates.push_back({step, b.add2("add", step, b.constant(1.0, DType::i64))});

  s.gradients.clear();  // consumed: the step's own outputs are its updates
  // The gradient half's outputs lead with loss and correct (then one gradient a param).
  std::vector<std::pair<std::string, NodeId>> grad_outputs = std::move(s.outputs);
  s.outputs.clear();
  if (part != StepPart::apply) {
    s.outputs.push_back({"loss", loss});
    if (correct != kNoNode) s.outputs.push_back({"correct", correct});
  }
  for (auto& o : grad_outputs) s.outputs.push_back(o);
  // Without a pre stage the step's forward pass is the model's: keeping the
  // model's other outputs lets predict and eval_step be lowered from this
  // graph and share its forward kernels (compiled once, not twice).
  if (part == StepPart::whole && rule.pre.is_null())
    for (auto& [name, id] : forward_outputs)
      if (s.output(name) == kNoNode) s.outputs.push_back({name, id});
  std::set<NodeId> updated;
  for (auto& [target, value] : s.updates) {
    if (!updated.insert(target).second)
      throw std::logic_error("building the training step: '" + s.node(target).name + "' would be updated twice");
    s.outputs.push_back({next_value_name(s.node(target).name), value});
  }
  eliminate_dead_code(s);
  verify_or_throw(s, "building the training step");
  return s;
}

Graph build_train_step(const Graph& model, const TrainStepConfig& config) {
  return build_step(model, config, StepPart::whole);
}

Graph build_gradient_step(const Graph& model, const TrainStepConfig& config) {
  return build_step(model, config, StepPart::gradients);
}

Graph build_apply_step(const Graph& model, const TrainStepConfig& config) {
  return build_step(model, config, StepPart::apply);
}

std::string gradient_input_name(const std::string& param) { return "grad:" + param; }

// The model reduced to some of its outputs.
static Graph model_with_outputs(const Graph& model, const std::string& suffix,
                                std::vector<std::pair<std::string, NodeId>> outputs) {
  Graph s = model;
  s.name = model.name + suffix;
  s.gradients.clear();
  s.outputs = std::move(outputs);
  specialize_mode(s, {Mode::infer});
  eliminate_dead_code(s);
  verify_or_throw(s, "building the " + suffix.substr(1) + " graph");
  return s;
}

Graph build_eval_step(const Graph& model) {
  std::vector<std::pair<std::string, NodeId>> outs = {{"loss", required_loss(model)}};
  if (model.output("correct") != kNoNode) outs.push_back({"correct", model.output("correct")});
  return model_with_outputs(model, ".eval_step", outs);
}

Graph build_predict(const Graph& model) {
  NodeId probs = model.output("probabilities");
  if (probs != kNoNode) return model_with_outputs(model, ".predict", {{"probabilities", probs}});
  NodeId logits = model.output("logits");
  if (logits == kNoNode)
    throw std::invalid_argument("graph '" + model.name + "' has neither a \"probabilities\" nor a \"logits\" output");
  Graph m = model;
  GraphBuilder b(m);
  NodeId softmax = b.add("softmax", {logits}, Attrs::object(), "probabilities");
  return model_with_outputs(m, ".predict", {{"probabilities", softmax}});
}

Graph build_gradient_graph(const Graph& model, bool use_handwritten_gradients) {
  Graph g = model;
  g.name = model.name + ".grad";
  NodeId loss = required_loss(model);
  if (!use_handwritten_gradients) g.gradients.clear();
  std::vector<NodeId> wrt;
  for (NodeId p : trainable_params(g))
    if (!g.gradients.count(p)) wrt.push_back(p);
  Gradients grads = differentiate(g, loss, wrt);
  for (NodeId p : trainable_params(g))
    g.outputs.push_back({gradient_input_name(g.node(p).name), g.gradients.count(p) ? g.gradients.at(p) : grads.of.at(p)});
  verify_or_throw(g, "autodiff");
  return g;
}

std::map<std::string, interp::Value> initial_optimizer_state(const Graph& step,
                                                             const std::map<std::string, interp::Value>& params) {
  std::map<std::string, interp::Value> out;
  for (NodeId id : step.params()) {
    const Node& n = step.node(id);
    if (n.attrs.value("role", std::string("param")) != "state") continue;
    const Attrs init = n.attrs.value("init", Attrs::object());
    if (init.value("kind", std::string("zeros")) == "copy") {
      std::string of = init.at("of");
      auto it = params.find(of);
      if (it == params.end()) throw std::invalid_argument("state '" + n.name + "' starts as a copy of param '" + of + "', which has no value");
      out[n.name] = it->second;
      continue;
    }
    out[n.name] = interp::Value{n.type.dtype, n.type.shape, std::vector<double>(static_cast<size_t>(numel(n.type.shape)), 0.0)};
  }
  return out;
}

}  // namespace kiln
