#include "compiler/frontend/json_text.h"
#include "compiler/frontend/train_spec.h"

#include <fnmatch.h>

#include <cmath>
#include <limits>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "compiler/autodiff/update_rule.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/frontend/json_text.h"
#include "compiler/ops/registry.h"
#include "compiler/passes/graph_edit.h"
#include "compiler/passes/passes.h"

namespace kiln {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kTopKeys = {"format", "name", "description", "graph", "data", "preprocessing",
                                           "batch_size", "epochs", "steps", "optimizer", "seed", "freeze",
                                           "unfreeze", "init_from", "validation", "metrics", "subset", "threads",
                                           "augmentation", "dropout"};
const std::vector<std::string> kMetrics = {"loss", "accuracy", "confusion_matrix", "epoch_time"};

class SpecReader {
 public:
  SpecReader(const json& root, std::string file) : root_(root), file_(std::move(file)) {
    dir_ = fs::path(file_).parent_path();
  }

  TrainSpec read() {
    TrainSpec s;
    s.file = file_;
    s.name = fs::path(file_).stem().string();
    if (!root_.is_object()) throw SpecError(file_, {{"", "", "a training spec is a JSON object"}});
    if (root_.value("format", json()) != kTrainFormat)
      fail("/format", std::string("\"format\" must be \"") + kTrainFormat + "\"");
    for (auto& [k, v] : root_.items())
      if (std::find(kTopKeys.begin(), kTopKeys.end(), k) == kTopKeys.end()) {
        std::string hint = closest_name(k, kTopKeys);
        fail("/" + k, "unknown key '" + k + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
      }
    if (auto* v = get("/name", root_, "name", json::value_t::string)) s.name = *v;
    if (auto* v = get("/description", root_, "description", json::value_t::string)) s.description = *v;
    if (auto* v = get("/graph", root_, "graph", json::value_t::string, true)) {
      s.graph = resolve(*v);
      // The error_code form: a name the OS cannot look up (a part over 255
      // bytes) is then reported here rather than thrown as filesystem_error.
      std::error_code ec;
      if (!fs::exists(s.graph, ec))
        fail("/graph", ec ? "graph file cannot be looked up: " + s.graph + " (" + ec.message() + ")"
                          : "graph file not found: " + s.graph);
    }
    read_data(s);
    read_preprocessing(s);
    read_batch(s);
    if (auto* v = get("/steps", root_, "steps", json::value_t::number_unsigned)) s.steps = positive(*v, "/steps");
    if (auto* v = get("/epochs", root_, "epochs", json::value_t::number_unsigned, !root_.contains("steps")))
      s.epochs = positive(*v, "/epochs");
    else if (s.steps > 0)
      s.epochs = std::numeric_limits<int32_t>::max();  // the step count ends the run
    read_optimizer(s);
    if (auto* v = get("/dropout", root_, "dropout", json::value_t::number_float)) {
      s.dropout = v->get<double>();
      if (!(s.dropout >= 0 && s.dropout <= 0.999)) fail("/dropout", "dropout is a rate in [0, 0.999], got " + v->dump());
    }
    if (auto* v = get("/seed", root_, "seed", json::value_t::number_unsigned)) s.seed = *v;
    s.freeze = strings("/freeze", "freeze");
    s.unfreeze = strings("/unfreeze", "unfreeze");
    if (auto* v = get("/init_from", root_, "init_from", json::value_t::string)) s.init_from = resolve(*v);
    read_validation(s);
    if (root_.contains("metrics")) {
      s.metrics = strings("/metrics", "metrics");
      for (size_t i = 0; i < s.metrics.size(); ++i)
        if (std::find(kMetrics.begin(), kMetrics.end(), s.metrics[i]) == kMetrics.end())
          fail("/metrics/" + std::to_string(i), "unknown metric '" + s.metrics[i] +
                                                    "' (metrics: loss, accuracy, confusion_matrix, epoch_time)");
    }
    read_subset(s);
    read_augmentation(s);
    if (auto* v = get("/threads", root_, "threads", json::value_t::number_unsigned)) s.threads = static_cast<int>(positive(*v, "/threads"));
    if (!diags_.empty()) throw SpecError(file_, diags_);
    return s;
  }

 private:
  void fail(std::string path, std::string msg) { diags_.push_back({std::move(path), "", std::move(msg)}); }

  std::string resolve(const std::string& p) const {
    fs::path path(p);
    return (path.is_absolute() ? path : dir_ / path).lexically_normal().string();
  }

  static const char* kind_name(json::value_t t) {
    switch (t) {
      case json::value_t::string: return "a string";
      case json::value_t::number_unsigned: return "a non-negative integer";
      case json::value_t::number_float: return "a number";
      case json::value_t::object: return "an object";
      case json::value_t::array: return "a list";
      case json::value_t::boolean: return "true or false";
      default: return "a value";
    }
  }

  // obj[key] if present and of kind `t` (any number for number_float); reports otherwise.
  const json* get(const std::string& path, const json& obj, const char* key, json::value_t t, bool required = false) {
    if (!obj.is_object() || !obj.contains(key)) {
      if (required) fail(path, std::string("\"") + key + "\" is required");
      return nullptr;
    }
    const json& v = obj[key];
    bool ok = t == json::value_t::number_float ? v.is_number()
              : t == json::value_t::number_unsigned ? v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0)
                                                    : v.type() == t;
    if (!ok) {
      fail(path, std::string("\"") + key + "\" must be " + kind_name(t) + ", got " + v.dump());
      return nullptr;
    }
    return &v;
  }

  int64_t positive(const json& v, const std::string& path) {
    int64_t x = v.get<int64_t>();
    if (x < 1) fail(path, "must be at least 1, got " + std::to_string(x));
    return x;
  }

  std::string choice(const std::string& path, const json& obj, const char* key, const std::vector<std::string>& choices,
                     bool required, std::string fallback) {
    const json* v = get(path, obj, key, json::value_t::string, required);
    if (!v) return fallback;
    std::string s = *v;
    if (std::find(choices.begin(), choices.end(), s) != choices.end()) return s;
    std::string list;
    for (auto& c : choices) list += (list.empty() ? "" : ", ") + c;
    fail(path, "\"" + s + "\" is not one of: " + list);
    return fallback;
  }

  std::vector<std::string> strings(const std::string& path, const char* key) {
    std::vector<std::string> out;
    const json* v = get(path, root_, key, json::value_t::array);
    if (!v) return out;
    for (size_t i = 0; i < v->size(); ++i) {
      if ((*v)[i].is_string()) out.push_back((*v)[i]);
      else fail(path + "/" + std::to_string(i), "must be a string, got " + (*v)[i].dump());
    }
    return out;
  }

  void read_data(TrainSpec& s) {
    const json* d = get("/data", root_, "data", json::value_t::object, true);
    if (!d) return;
    s.dataset = choice("/data/set", *d, "set", {"mnist", "fashion_mnist", "cifar10", "text"}, true, "");
    std::vector<std::string> keys = {"set", "dir"};
    if (s.dataset == "text") {
      keys = {"set", "file", "context", "validation_fraction"};
      if (auto* v = get("/data/file", *d, "file", json::value_t::string, true)) s.text_file = resolve(*v);
      if (auto* v = get("/data/context", *d, "context", json::value_t::number_unsigned, true))
        s.context = positive(*v, "/data/context");
      if (auto* v = get("/data/validation_fraction", *d, "validation_fraction", json::value_t::number_float)) {
        s.text_validation_fraction = *v;
        if (!(s.text_validation_fraction >= 0 && s.text_validation_fraction < 1))
          fail("/data/validation_fraction", "the validation fraction is in [0, 1), got " + v->dump());
      }
    } else if (auto* v = get("/data/dir", *d, "dir", json::value_t::string, s.dataset != "fashion_mnist")) {
      s.data_dir = resolve(*v);
    } else if (s.dataset == "fashion_mnist") {
      s.data_dir = kFashionMnistDir;  // Debian's dataset-fashion-mnist
    }
    for (auto& [k, v] : d->items())
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
        std::string list;
        for (auto& key : keys) list += (list.empty() ? "" : ", ") + key;
        fail("/data/" + k, "unknown key '" + k + "' (data of set \"" + s.dataset + "\": " + list + ")");
      }
  }

  void read_preprocessing(TrainSpec& s) {
    if (s.dataset == "text") {  // bytes in, bytes out: nothing to choose
      if (root_.contains("preprocessing"))
        fail("/preprocessing", "a text data set takes no preprocessing (windows of byte ids feed the model)");
      return;
    }
    const json* p = get("/preprocessing", root_, "preprocessing", json::value_t::object, true);
    if (!p) return;
    s.images = choice("/preprocessing/images", *p, "images", {"standardize", "scale255"}, true, s.images);
    s.labels = choice("/preprocessing/labels", *p, "labels", {"onehot", "sparse", "binary"}, true, s.labels);
    if (const json* pc = get("/preprocessing/positive_classes", *p, "positive_classes", json::value_t::array))
      for (size_t i = 0; i < pc->size(); ++i) {
        if ((*pc)[i].is_number_integer() && (*pc)[i].get<int>() >= 0) s.positive_classes.push_back((*pc)[i]);
        else fail("/preprocessing/positive_classes/" + std::to_string(i), "a class is a non-negative integer");
      }
    if (s.labels == "binary" && s.positive_classes.empty())
      fail("/preprocessing/positive_classes", "binary labels need \"positive_classes\" (the classes labelled 1)");
    if (s.labels != "binary" && p->contains("positive_classes"))
      fail("/preprocessing/positive_classes", "only binary labels take positive_classes");
    if (const json* n = get("/preprocessing/normalize", *p, "normalize", json::value_t::object)) {
      s.normalize_mean = numbers("/preprocessing/normalize/mean", *n, "mean");
      s.normalize_std = numbers("/preprocessing/normalize/std", *n, "std");
      if (s.normalize_mean.size() != s.normalize_std.size())
        fail("/preprocessing/normalize", "mean and std need one value per channel each (" +
                                             std::to_string(s.normalize_mean.size()) + " means, " +
                                             std::to_string(s.normalize_std.size()) + " stds)");
      for (size_t i = 0; i < s.normalize_std.size(); ++i)
        if (!(s.normalize_std[i] > 0)) fail("/preprocessing/normalize/std/" + std::to_string(i), "a std is positive");
      if (s.images == "standardize") fail("/preprocessing/normalize", "per-channel normalization needs images \"scale255\"");
      for (auto& [k, v] : n->items())
        if (k != "mean" && k != "std") fail("/preprocessing/normalize/" + k, "unknown key '" + k + "' (normalize: mean, std)");
    }
    for (auto& [k, v] : p->items())
      if (k != "images" && k != "labels" && k != "positive_classes" && k != "normalize")
        fail("/preprocessing/" + k, "unknown key '" + k + "' (preprocessing: images, labels, positive_classes, normalize)");
  }

  void read_augmentation(TrainSpec& s) {
    const json* a = get("/augmentation", root_, "augmentation", json::value_t::object);
    if (!a) return;
    if (s.dataset == "text") fail("/augmentation", "augmentation is for image data sets");
    if (s.images == "standardize") fail("/augmentation", "augmentation needs images \"scale255\" (images keep their shape)");
    if (const json* c = get("/augmentation/random_crop", *a, "random_crop", json::value_t::object)) {
      if (auto* v = get("/augmentation/random_crop/padding", *c, "padding", json::value_t::number_unsigned, true))
        s.crop_padding = *v;
      for (auto& [k, v] : c->items())
        if (k != "padding") fail("/augmentation/random_crop/" + k, "unknown key '" + k + "' (random_crop: padding)");
    }
    if (auto* v = get("/augmentation/horizontal_flip", *a, "horizontal_flip", json::value_t::boolean)) s.horizontal_flip = *v;
    for (auto& [k, v] : a->items())
      if (k != "random_crop" && k != "horizontal_flip")
        fail("/augmentation/" + k, "unknown key '" + k + "' (augmentation: random_crop, horizontal_flip)");
  }

  std::vector<double> numbers(const std::string& path, const json& obj, const char* key) {
    std::vector<double> out;
    const json* v = get(path, obj, key, json::value_t::array, true);
    if (!v) return out;
    for (size_t i = 0; i < v->size(); ++i) {
      if ((*v)[i].is_number()) out.push_back((*v)[i]);
      else fail(path + "/" + std::to_string(i), "must be a number, got " + (*v)[i].dump());
    }
    return out;
  }

  void read_batch(TrainSpec& s) {
    if (!root_.contains("batch_size")) { fail("/batch_size", "\"batch_size\" is required (a number or \"full\")"); return; }
    const json& v = root_["batch_size"];
    if (v == "full") s.full_batch = true;
    else if (v.is_number_integer() && v.get<int64_t>() >= 1) s.batch_size = v;
    else fail("/batch_size", "batch_size is a positive integer or \"full\", got " + v.dump());
  }

  void read_optimizer(TrainSpec& s) {
    const json* o = get("/optimizer", root_, "optimizer", json::value_t::object, true);
    if (!o) return;
    OptimizerSpec& opt = s.optimizer;
    UpdateRule rule;
    if (auto* k = get("/optimizer/kind", *o, "kind", json::value_t::string, true)) {
      std::string kind = *k;
      try {
        if (is_builtin_update_rule(kind)) {
          opt.kind = kind;
          rule = builtin_update_rule(kind);
        } else if (kind.size() > 5 && kind.ends_with(".json")) {
          opt.kind = resolve(kind);
          rule = load_update_rule(opt.kind);
        } else {
          fail("/optimizer/kind", "optimizer kind is one of " + builtin_update_rule_names() +
                                      " or the path of a kiln.update/1 file (.json), got \"" + kind + "\"");
        }
      } catch (const GraphError& e) {
        fail("/optimizer/kind", std::string("the update rule does not load: ") + e.what());
      }
    }
    if (o->contains("lr")) read_value("/optimizer/lr", (*o)["lr"], "lr", opt.lr);
    else if (opt.kind == "adam" || opt.kind == "adamw") opt.lr = 1e-3;
    else if (is_builtin_update_rule(opt.kind)) opt.lr = 0.01;
    else fail("/optimizer/lr", "a custom update rule needs an explicit \"lr\"");
    if (const json* h = get("/optimizer/hyperparameters", *o, "hyperparameters", json::value_t::object))
      for (auto& [name, v] : h->items()) {
        std::string path = "/optimizer/hyperparameters/" + name;
        bool declared = false;
        for (auto& [hn, d] : rule.hyperparameters) declared = declared || hn == name;
        if (!rule.name.empty() && !declared) {
          std::vector<std::string> names;
          for (auto& [hn, d] : rule.hyperparameters) names.push_back(hn);
          std::string hint = closest_name(name, names);
          fail(path, "optimizer '" + rule.name + "' has no hyperparameter '" + name + "'" +
                         (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
          continue;
        }
        double value = 0;
        read_value(path, v, name, value);
        opt.hyperparameters[name] = value;
      }
    if (const json* sch = get("/optimizer/schedule", *o, "schedule", json::value_t::object)) read_schedule(*sch, rule, opt);
    if (auto* v = get("/optimizer/weight_decay", *o, "weight_decay", json::value_t::number_float)) {
      opt.weight_decay = *v;
      if (opt.weight_decay < 0) fail("/optimizer/weight_decay", "weight decay is not negative, got " + v->dump());
    }
    opt.weight_decay_mode = choice("/optimizer/weight_decay_mode", *o, "weight_decay_mode", {"coupled", "decoupled"}, false, "");
    if (const json* g = get("/optimizer/no_weight_decay", *o, "no_weight_decay", json::value_t::array))
      for (size_t i = 0; i < g->size(); ++i) {
        if ((*g)[i].is_string()) opt.no_weight_decay.push_back((*g)[i]);
        else fail("/optimizer/no_weight_decay/" + std::to_string(i), "a glob on param names is a string");
      }
    if (auto* v = get("/optimizer/clip_grad_norm", *o, "clip_grad_norm", json::value_t::number_float)) {
      opt.clip_grad_norm = *v;
      if (!(opt.clip_grad_norm > 0)) fail("/optimizer/clip_grad_norm", "the largest gradient norm is positive, got " + v->dump());
    }
    const std::vector<std::string> keys = {"kind", "lr", "hyperparameters", "schedule", "weight_decay",
                                           "weight_decay_mode", "no_weight_decay", "clip_grad_norm"};
    for (auto& [k, v] : o->items())
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
        std::string hint = closest_name(k, keys);
        fail("/optimizer/" + k, "unknown key '" + k + "' (optimizer: kind, lr, hyperparameters, schedule, weight_decay, "
                                "weight_decay_mode, no_weight_decay, clip_grad_norm)" +
                                    (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
      }
  }

  void read_schedule(const json& sch, const UpdateRule& rule, OptimizerSpec& opt) {
    const std::string at = "/optimizer/schedule/";
    LrSchedule& sc = opt.schedule;
    sc.kind = choice(at + "kind", sch, "kind", schedule_kinds(), true, "constant");
    const std::vector<std::string>& allowed = schedule_keys(sc.kind);
    auto reads = [&](const char* key) { return std::find(allowed.begin(), allowed.end(), key) != allowed.end(); };
    for (auto& [k, v] : sch.items())
      if (k != "kind" && k != "warmup_steps" && k != "warmup_start_factor" && !reads(k.c_str())) {
        std::string list;
        for (auto& key : allowed) list += ", " + key;
        fail(at + k, "schedule \"" + sc.kind + "\" has no key '" + k + "' (it reads: kind, warmup_steps, warmup_start_factor" + list + ")");
      }
    auto number = [&](const char* key, double& out, bool required = false) {
      if (auto* v = get(at + key, sch, key, json::value_t::number_float, required && reads(key))) out = *v;
    };
    auto count = [&](const char* key, int64_t& out, bool required = false) {
      if (auto* v = get(at + key, sch, key, json::value_t::number_unsigned, required && reads(key))) out = positive(*v, at + key);
    };
    auto flag = [&](const char* key, bool& out) {
      if (auto* v = get(at + key, sch, key, json::value_t::boolean)) out = *v;
    };
    const bool decays = sc.kind == "exponential" || sc.kind == "step" || sc.kind == "inverse_time";
    number("decay_rate", sc.decay_rate, decays);
    count("decay_steps", sc.decay_steps, decays);
    flag("staircase", sc.staircase);
    if (const json* m = get(at + "milestones", sch, "milestones", json::value_t::array, sc.kind == "multistep"))
      for (size_t i = 0; i < m->size(); ++i) {
        const json& e = (*m)[i];
        if (!e.is_number_integer() || e.get<int64_t>() < 1 || (!sc.milestones.empty() && e.get<int64_t>() <= sc.milestones.back()))
          fail(at + "milestones/" + std::to_string(i), "milestones are increasing step numbers >= 1, got " + e.dump());
        else sc.milestones.push_back(e);
      }
    number("gamma", sc.gamma);
    count("total_steps", sc.total_steps);
    number("min_lr", sc.min_lr);
    number("pct_start", sc.pct_start);
    if (!(sc.pct_start > 0 && sc.pct_start < 1)) fail(at + "pct_start", "pct_start is in (0, 1)");
    number("div_factor", sc.div_factor);
    number("final_div_factor", sc.final_div_factor);
    if (!(sc.div_factor > 0) || !(sc.final_div_factor > 0)) fail(at + "div_factor", "div_factor and final_div_factor are positive");
    flag("three_phase", sc.three_phase);
    sc.anneal = choice(at + "anneal", sch, "anneal", {"cos", "linear"}, false, sc.anneal);
    number("base_momentum", sc.base_momentum);
    number("max_momentum", sc.max_momentum);
    // PyTorch cycles "momentum", else "beta1"; a rule with neither cannot cycle.
    bool has_momentum = false;
    for (auto& [h, d] : rule.hyperparameters) has_momentum = has_momentum || h == "momentum" || h == "beta1";
    if (sc.kind == "onecycle") {
      if (sch.contains("cycle_momentum")) flag("cycle_momentum", sc.cycle_momentum);
      else sc.cycle_momentum = has_momentum;
      if (sc.cycle_momentum && !has_momentum && !rule.name.empty())
        fail(at + "cycle_momentum", "optimizer '" + rule.name + "' has neither a \"momentum\" nor a \"beta1\" to cycle (set cycle_momentum false)");
    }
    if (auto* v = get(at + "warmup_steps", sch, "warmup_steps", json::value_t::number_unsigned)) sc.warmup_steps = *v;
    number("warmup_start_factor", sc.warmup_start_factor);
    if (!(sc.warmup_start_factor > 0 && sc.warmup_start_factor <= 1))
      fail(at + "warmup_start_factor", "the warm-up's start factor is in (0, 1] (PyTorch LinearLR)");
  }

  // A number, or a non-empty list of numbers (a sweep: its first value is the default).
  void read_value(const std::string& path, const json& v, const std::string& name, double& out) {
    if (v.is_number()) { out = v; return; }
    if (v.is_array() && !v.empty() && std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_number(); })) {
      out = v[0];
      root_sweeps_[name] = v.get<std::vector<double>>();
      return;
    }
    fail(path, "must be a number or a non-empty list of numbers (a sweep), got " + v.dump());
  }

  void read_validation(TrainSpec& s) {
    const json* v = get("/validation", root_, "validation", json::value_t::object);
    if (!v) return;
    if (auto* c = get("/validation/count", *v, "count", json::value_t::number_unsigned, true)) s.validation_count = *c;
    if (auto* c = get("/validation/seed", *v, "seed", json::value_t::number_unsigned)) s.validation_seed = *c;
    else s.validation_seed = s.seed;
  }

  void read_subset(TrainSpec& s) {
    const json* v = get("/subset", root_, "subset", json::value_t::object);
    if (!v) return;
    if (auto* c = get("/subset/train", *v, "train", json::value_t::number_unsigned)) s.train_subset = positive(*c, "/subset/train");
    if (auto* c = get("/subset/test", *v, "test", json::value_t::number_unsigned)) s.test_subset = positive(*c, "/subset/test");
  }

 public:
  std::map<std::string, std::vector<double>> root_sweeps_;

 private:
  const json& root_;
  std::string file_;
  fs::path dir_;
  std::vector<Diagnostic> diags_;
};

}  // namespace

TrainSpec parse_train_spec(const std::string& text, const std::string& file) {
  // Syntax errors and out-of-range numbers are located by the shared JSON reader.
  json root;
  try {
    JsonText parsed = parse_json_text(text, file);
    if (!parsed.problems.empty()) throw SpecError(file, parsed.problems);
    root = std::move(parsed.root);
  } catch (const GraphError& e) {
    throw SpecError(file, e.diagnostics);
  }
  SpecReader reader(root, file);
  TrainSpec spec = reader.read();
  spec.optimizer.sweeps = reader.root_sweeps_;
  return spec;
}

TrainSpec load_train_spec(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw SpecError(path, {{"", "", "cannot open the training spec"}});
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_train_spec(ss.str(), path);
}

static std::string short_number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

std::vector<TrainSpec> expand_sweeps(const TrainSpec& spec) {
  std::vector<TrainSpec> out = {spec};
  out[0].optimizer.sweeps.clear();
  for (auto& [name, values] : spec.optimizer.sweeps) {
    std::vector<TrainSpec> next;
    for (const TrainSpec& base : out)
      for (double v : values) {
        TrainSpec s = base;
        if (name == "lr") s.optimizer.lr = v;
        else s.optimizer.hyperparameters[name] = v;
        s.name += "[" + name + "=" + short_number(v) + "]";
        next.push_back(std::move(s));
      }
    out = std::move(next);
  }
  return out;
}

void apply_train_spec(Graph& g, const TrainSpec& spec) {
  std::vector<Diagnostic> diags;
  auto matches = [](const std::vector<std::string>& patterns, const std::string& name) {
    for (auto& p : patterns)
      if (fnmatch(p.c_str(), name.c_str(), 0) == 0) return true;
    return false;
  };
  for (const char* key : {"freeze", "unfreeze"}) {
    const auto& patterns = std::string(key) == "freeze" ? spec.freeze : spec.unfreeze;
    for (size_t i = 0; i < patterns.size(); ++i) {
      bool any = false;
      for (NodeId p : g.params()) any = any || matches({patterns[i]}, g.node(p).name);
      if (!any)
        diags.push_back({"/" + std::string(key) + "/" + std::to_string(i), "",
                         "pattern \"" + patterns[i] + "\" matches no param of graph '" + g.name + "'"});
    }
  }
  if (!diags.empty()) throw SpecError(spec.file, diags);
  for (NodeId p : g.params()) {
    Node& n = g.node(p);
    if (n.attrs.value("role", std::string("param")) != "param") continue;
    if (matches(spec.unfreeze, n.name)) n.attrs["trainable"] = true;
    else if (matches(spec.freeze, n.name)) n.attrs["trainable"] = false;
  }
  if (!std::isnan(spec.dropout)) {
    bool removed = false;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      Node& n = g.nodes[i];
      if (n.op != "dropout") continue;
      n.attrs["rate"] = spec.dropout;
      if (spec.dropout == 0) replace_uses(g, static_cast<NodeId>(i), n.inputs.at(0)), removed = true;
    }
    if (removed) eliminate_dead_code(g);
  }
}

}  // namespace kiln
