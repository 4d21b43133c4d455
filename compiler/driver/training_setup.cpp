#include "compiler/driver/training_setup.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "compiler/autodiff/train_step.h"
#include "compiler/interp/interpreter.h"
#include "runtime/data/cifar.h"
#include "runtime/data/mnist.h"
#include "runtime/data/augment.h"
#include "runtime/data/preprocess.h"
#include "runtime/data/text_windows.h"

namespace kiln::driver {

namespace fs = std::filesystem;

namespace {

bool any_exists(const std::vector<fs::path>& paths) {
  for (auto& p : paths)
    if (fs::exists(p)) return true;
  return false;
}

void require_data(const TrainSpec& spec) {
  fs::path d(spec.data_dir);
  if (spec.dataset == "fashion_mnist" && !any_exists({d / "train-images-idx3-ubyte.gz", d / "train-images-idx3-ubyte"}))
    throw MissingDataError("the Fashion-MNIST data is not in " + spec.data_dir + " (spec " + spec.file +
                           "): install Debian's dataset-fashion-mnist (tools/setup.sh does) or give \"data\": {\"dir\": ...}");
  bool ok = spec.dataset == "mnist" || spec.dataset == "fashion_mnist"
                ? any_exists({d / "train-images-idx3-ubyte.gz", d / "train-images-idx3-ubyte"})
                : any_exists({d / "cifar-10-batches-bin" / "data_batch_1.bin", d / "data_batch_1.bin"});
  if (!ok)
    throw MissingDataError("the " + spec.dataset + " data is not in " + spec.data_dir +
                           " (spec " + spec.file + "): run `kiln data prepare --from ../shared/data` "
                           "(local copies) or `kiln data prepare` (download) in the repository first");
}

data::LabeledImages load_raw(const TrainSpec& spec, const std::string& split) {
  require_data(spec);
  if (spec.dataset == "cifar10") {
    data::LabeledImages raw = data::load_cifar10(spec.data_dir, split);
    if (raw.class_names.empty()) raw.class_names = data::cifar10_class_names();
    return raw;
  }
  data::LabeledImages raw = data::load_mnist_split(spec.data_dir, split == "test" ? "t10k" : split);
  if (spec.dataset == "fashion_mnist")
    raw.class_names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                       "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return raw;
}

// Images stay bytes, decoded a batch at a time as the batcher gathers them
// (CIFAR-10's training set: 153 MB, not 614 MB of f32), except for a
// full-batch spec, whose one batch is the whole set in every step.
data::Dataset make_dataset(const TrainSpec& spec, data::LabeledImages raw) {
  Tensor labels = prepare_labels(spec, raw.labels, 10);
  if (spec.full_batch) return data::Dataset::make(preprocess_images(spec, raw.images), std::move(labels));
  auto shared = std::make_shared<const TrainSpec>(spec);
  return data::Dataset::make(std::move(raw.images), std::move(labels),
                             [shared](const Tensor& rows) { return preprocess_images(*shared, rows); });
}

// A seeded random k rows (in file order): the JPEG-imported CIFAR-10 is sorted
// by class, so its first k rows would hold only a few classes.
data::Dataset some_rows(const data::Dataset& d, int64_t k, uint64_t seed) {
  return k > 0 && k < d.size() ? data::subset_random(d, k, seed) : d;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Tensor to_tensor(const interp::Value& v, ElemType type) {
  Tensor t(type, v.shape);
  auto bytes = codegen::to_bytes(v, static_cast<DType>(static_cast<int>(type)));
  std::memcpy(t.raw(), bytes.data(), bytes.size());
  return t;
}

interp::Value to_value(const Tensor& t) {
  return codegen::from_bytes(t.raw(), static_cast<DType>(static_cast<int>(t.dtype())), t.shape());
}

}  // namespace

Tensor preprocess_images(const TrainSpec& spec, const Tensor& images) {
  if (spec.images == "standardize") return data::per_image_standardize(images);
  Tensor scaled = data::scale_unit(images);
  if (!spec.normalize_mean.empty()) {
    const int64_t channels = scaled.rank() ? scaled.dim(scaled.rank() - 1) : 0;
    if (channels != static_cast<int64_t>(spec.normalize_mean.size()))
      throw std::runtime_error(spec.file + ": preprocessing.normalize has " + std::to_string(spec.normalize_mean.size()) +
                               " channels, the images " + shape_string(scaled.shape()) + " have " + std::to_string(channels));
    auto v = scaled.span<float>();
    for (size_t i = 0; i < v.size(); ++i) {
      const size_t c = i % static_cast<size_t>(channels);
      v[i] = static_cast<float>((v[i] - spec.normalize_mean[c]) / spec.normalize_std[c]);
    }
  }
  return scaled;
}

std::function<void(data::Batch&, std::span<const int64_t>, int64_t)> training_batch_transform(const TrainSpec& spec,
                                                                                             const SpecData& data) {
  if (spec.dataset == "text")
    return data::random_window_transform(data.text_train, spec.context, spec.seed);
  data::ImageAugmentation a;
  a.crop_padding = spec.crop_padding;
  a.horizontal_flip = spec.horizontal_flip;
  a.seed = spec.seed;
  for (size_t c = 0; c < spec.normalize_mean.size(); ++c)  // a zero pixel, normalized
    a.fill.push_back(static_cast<float>(-spec.normalize_mean[c] / spec.normalize_std[c]));
  if (!a.active()) return {};
  return [a](data::Batch& batch, std::span<const int64_t> rows, int64_t epoch) {
    data::augment_images(batch.own_features(), rows, epoch, a);
  };
}

Tensor prepare_labels(const TrainSpec& spec, const Tensor& labels, int64_t classes) {
  if (spec.labels == "onehot") return data::one_hot(labels, classes);
  if (spec.labels == "sparse") return labels;
  Tensor out(ElemType::f32, {labels.dim(0), 1});
  auto in = labels.span<int32_t>();
  auto o = out.span<float>();
  for (size_t i = 0; i < in.size(); ++i)
    o[i] = std::find(spec.positive_classes.begin(), spec.positive_classes.end(), in[i]) != spec.positive_classes.end();
  return out;
}

data::Dataset load_split(const TrainSpec& spec, const std::string& split, std::vector<std::string>* class_names) {
  if (spec.dataset == "text")
    throw std::runtime_error(spec.file + ": a text data set has no " + split +
                             " split of images; its validation windows are evaluated during training "
                             "(metrics.json, `kiln generate` to sample)");
  data::LabeledImages raw = load_raw(spec, split);
  if (class_names) *class_names = raw.class_names;
  return make_dataset(spec, std::move(raw));
}

// Text: the first (1 - fraction) of the bytes train, the rest validation; no test set.
static SpecData load_text_data(const TrainSpec& spec, int64_t tr, int64_t te) {
  if (!fs::exists(spec.text_file))
    throw MissingDataError("the text file " + spec.text_file + " does not exist (spec " + spec.file +
                           "): run `kiln data prepare --from ../shared/data` in the repository first");
  SpecData out;
  out.text = std::make_shared<std::vector<uint8_t>>(data::read_text_bytes(spec.text_file));
  const auto& bytes = *out.text;
  const size_t cut = static_cast<size_t>(static_cast<double>(bytes.size()) * (1.0 - spec.text_validation_fraction));
  out.text_train = std::span(bytes.data(), cut);
  out.train = data::text_windows(out.text_train, spec.context);
  if (cut < bytes.size()) out.validation = data::text_windows(std::span(bytes.data() + cut, bytes.size() - cut), spec.context);
  // Subsets keep the first rows: windows are positions, and the first k are the text's beginning.
  if (tr > 0 && tr < out.train.size()) out.train = data::subset_first(out.train, tr);
  if (te > 0 && te < out.validation.size()) out.validation = data::subset_first(out.validation, te);
  return out;
}

SpecData load_spec_data(const TrainSpec& spec, int64_t train_subset, int64_t test_subset) {
  int64_t tr = train_subset > 0 ? train_subset : spec.train_subset;
  int64_t te = test_subset > 0 ? test_subset : spec.test_subset;
  if (spec.dataset == "text") return load_text_data(spec, tr, te);
  SpecData out;
  data::Dataset train = load_split(spec, "train", &out.class_names);
  if (spec.validation_count > 0) {
    if (spec.validation_count >= train.size())
      throw std::runtime_error(spec.file + ": validation count " + std::to_string(spec.validation_count) +
                               " leaves no training data (" + std::to_string(train.size()) + " images)");
    auto split = data::split_validation(train, spec.validation_count, spec.validation_seed);
    out.train = some_rows(split.train, tr, spec.seed);
    out.validation = some_rows(split.validation, te, spec.seed);
  } else {
    out.train = some_rows(train, tr, spec.seed);
  }
  out.test = some_rows(load_split(spec, "test"), te, spec.seed);
  return out;
}

int64_t batches_per_epoch(const TrainSpec& spec, int64_t train_size) {
  if (spec.full_batch || train_size <= 0) return 1;
  return (train_size + spec.batch_size - 1) / spec.batch_size;
}

std::function<train::StepScalars(int64_t step)> step_schedule(const TrainSpec& spec, int64_t run_steps) {
  const OptimizerSpec& o = spec.optimizer;
  std::string cycled;  // the step input one-cycle drives, if it does
  if (momentum_at(o.schedule, 0, run_steps))
    cycled = kHyperparameterInputPrefix +
             cycled_momentum_name(is_builtin_update_rule(o.kind) ? builtin_update_rule(o.kind) : load_update_rule(o.kind));
  return [schedule = o.schedule, lr = o.lr, run_steps, cycled](int64_t step) {
    train::StepScalars out;
    out.lr = static_cast<float>(learning_rate_at(schedule, lr, step, run_steps));
    if (!cycled.empty())
      if (auto momentum = momentum_at(schedule, step, run_steps)) out.inputs.push_back({cycled, static_cast<float>(*momentum)});
    return out;
  };
}

int64_t training_max_batch(const TrainSpec& spec, int64_t train_size) {
  return spec.full_batch ? train_size : std::min(spec.batch_size, train_size);
}

namespace {

// The features are the input the model's prediction reads; the labels only
// reach the loss. (Inputs come in name order: "targets" sorts before
// "tokens", so order alone would feed a language model its own targets.)
void assign_features_and_labels(const Graph& model, const std::vector<NodeId>& inputs, CompiledModel& m) {
  std::string a = model.node(inputs[0]).name, b = model.node(inputs[1]).name;
  std::string feature;
  for (const char* output : {"logits", "probabilities"}) {
    if (model.output(output) == kNoNode || !feature.empty()) continue;
    std::vector<bool> seen(model.nodes.size(), false);
    std::vector<NodeId> stack = {model.output(output)}, reached;
    while (!stack.empty()) {
      NodeId id = stack.back();
      stack.pop_back();
      if (seen[static_cast<size_t>(id)]) continue;
      seen[static_cast<size_t>(id)] = true;
      if (model.node(id).op == "input") reached.push_back(id);
      for (NodeId in : model.node(id).inputs) stack.push_back(in);
    }
    if (reached.size() == 1) feature = model.node(reached[0]).name;
  }
  if (!feature.empty()) {
    m.features_input = feature;
    m.labels_input = feature == a ? b : a;
  } else {
    m.features_input = b == "x" ? b : a;
    m.labels_input = b == "x" ? a : b;
  }
}

}  // namespace

std::unique_ptr<const codegen::ProgramGraphs> model_graphs(Graph model, const TrainSpec* spec, bool distributed) {
  if (!spec) return codegen::program_graphs(std::move(model), nullptr);
  apply_train_spec(model, *spec);
  TrainStepConfig config = train_step_config(*spec);
  return codegen::program_graphs(std::move(model), &config, distributed);
}

CompiledModel compile_model(Graph model, const TrainSpec* spec, int64_t max_batch, int threads,
                            const codegen::CodegenOptions& copts, bool distributed) {
  CompiledModel m;
  auto inputs = model.inputs();
  if (!spec && inputs.size() == 1) {
    m.features_input = model.node(inputs[0]).name;  // a forward graph of one input (an imported model)
  } else if (inputs.size() == 2) {
    assign_features_and_labels(model, inputs, m);
  } else {
    throw std::runtime_error("graph '" + model.name + "' has " + std::to_string(inputs.size()) +
                             " inputs; " + (spec ? "training needs" : "a compiled model takes") +
                             " two (the images and their labels)");
  }
  auto t0 = std::chrono::steady_clock::now();
  m.graphs = model_graphs(std::move(model), spec, distributed);
  m.compiled = codegen::compile_entries(m.graphs->model.name, m.graphs->entries(), {.max_batch = max_batch}, copts);
  m.compile_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  m.pool = std::make_unique<ThreadPool>(n);
  m.program = std::make_unique<Program>(m.compiled->info(), m.pool.get());
  return m;
}

std::string aot_init_json(const codegen::ProgramGraphs& graphs, const lower::Program& program,
                          std::optional<uint64_t> seed) {
  // Mirrors initialize(): params from interp::init_params, state from initial_optimizer_state.
  auto init_of = [](const Graph& g, const std::string& name) -> const Node* {
    for (NodeId id : g.params())
      if (g.node(id).name == name) return &g.node(id);
    return nullptr;
  };
  const lower::Entry* init = program.entry("init");
  nlohmann::json inputs = nlohmann::json::array();
  for (const lower::EntryTensor& t : init ? init->inputs : std::vector<lower::EntryTensor>{}) {
    nlohmann::json rule;
    if (const Node* n = init_of(graphs.model, t.name)) {
      rule = n->attrs.value("init", nlohmann::json{{"kind", "zeros"}});
    } else if (const Node* s = graphs.train_step ? init_of(*graphs.train_step, t.name) : nullptr) {
      nlohmann::json st = s->attrs.value("init", nlohmann::json::object());
      if (st.value("kind", std::string("zeros")) == "copy") {
        const Node* of = init_of(graphs.model, st.at("of").get<std::string>());
        if (!of) throw std::runtime_error("state '" + t.name + "' copies param '" + st.at("of").get<std::string>() + "', which the model lacks");
        rule = {{"kind", "copy"}, {"of", of->name}, {"init", of->attrs.value("init", nlohmann::json{{"kind", "zeros"}})}};
      } else {
        rule = {{"kind", "zeros"}};
      }
    } else {
      throw std::runtime_error("init input '" + t.name + "' is neither a param nor an optimizer state");
    }
    inputs.push_back({{"name", t.name}, {"init", rule}});
  }
  nlohmann::json j = {{"seed", seed ? nlohmann::json(*seed) : nlohmann::json(nullptr)}, {"inputs", inputs}};
  return j.dump();
}

void initialize(CompiledModel& m, const TrainSpec& spec) {
  const Graph& model = m.graphs->model;
  auto params = interp::init_params(model, spec.seed);
  std::vector<std::string> loaded;  // params whose values came from init_from
  if (!spec.init_from.empty()) {
    if (!fs::exists(spec.init_from))
      throw std::runtime_error(spec.file + ": init_from checkpoint " + spec.init_from +
                               " does not exist (train the run that writes it first)");
    train::Checkpoint from = train::load_checkpoint(spec.init_from);
    int matched = 0;
    for (auto& [name, value] : params) {
      const Tensor* t = train::find_tensor(from.params, name);
      if (!t) continue;
      if (t->shape() != value.shape)
        throw std::runtime_error(spec.init_from + ": param '" + name + "' has shape " + shape_string(t->shape()) +
                                 ", the graph's is " + shape_string(value.shape));
      value = to_value(*t);
      loaded.push_back(name);
      ++matched;
    }
    if (matched == 0)
      throw std::runtime_error(spec.init_from + ": no param name matches graph '" + model.name + "'");
  }
  std::map<std::string, interp::Value> state;
  if (m.graphs->train_step) state = initial_optimizer_state(*m.graphs->train_step, params);
  const EntryInfo* init = m.program->entry("init");
  if (!init) throw std::runtime_error("program has no init entry point");
  std::vector<Tensor> values;
  std::vector<const void*> ptrs;
  for (const TensorInfo& t : init->inputs) {
    const interp::Value* v = params.count(t.name) ? &params.at(t.name) : state.count(t.name) ? &state.at(t.name) : nullptr;
    if (!v) throw std::runtime_error("no initial value for '" + t.name + "'");
    values.push_back(to_tensor(*v, t.type));
  }
  for (auto& v : values) ptrs.push_back(v.raw());
  m.program->run("init", 1, ptrs, {});
  // init fills constant-initialized params (zeros, ones) itself, without
  // reading an input: a checkpoint's value for one is written over it.
  for (const std::string& name : loaded)
    for (const TensorInfo& t : m.program->info().persistent)
      if (t.name == name && !t.state) {
        Tensor v = to_tensor(params.at(name), t.type);
        std::memcpy(m.program->persistent(name), v.raw(), v.nbytes());
      }
}

void load_params(CompiledModel& m, const train::Checkpoint& ckpt) {
  for (const TensorInfo& t : m.program->info().persistent) {
    if (t.state) continue;
    const Tensor* v = train::find_tensor(ckpt.params, t.name);
    if (!v) throw std::runtime_error("the checkpoint has no param '" + t.name + "'");
    if (v->dtype() != t.type || v->shape() != t.shape)
      throw std::runtime_error("checkpoint param '" + t.name + "' is " + shape_string(v->shape()) +
                               ", the program's is " + shape_string(t.shape));
    std::memcpy(m.program->persistent(t.name), v->raw(), v->nbytes());
  }
}

std::string spec_json_for_checkpoint(const TrainSpec& spec) {
  nlohmann::json j = nlohmann::json::parse(read_text(spec.file));
  j["name"] = spec.name;
  j["graph"] = fs::absolute(spec.graph).string();
  if (spec.dataset == "text") j["data"]["file"] = fs::absolute(spec.text_file).string();
  else j["data"]["dir"] = fs::absolute(spec.data_dir).string();
  if (!spec.init_from.empty()) j["init_from"] = fs::absolute(spec.init_from).string();
  auto& o = j["optimizer"];
  if (!is_builtin_update_rule(spec.optimizer.kind)) o["kind"] = fs::absolute(spec.optimizer.kind).string();
  o["lr"] = spec.optimizer.lr;
  if (!spec.optimizer.hyperparameters.empty()) o["hyperparameters"] = spec.optimizer.hyperparameters;
  else o.erase("hyperparameters");
  return j.dump(2);
}

}  // namespace kiln::driver
