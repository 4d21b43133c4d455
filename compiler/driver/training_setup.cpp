#include "compiler/driver/training_setup.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "compiler/autodiff/train_step.h"
#include "compiler/interp/interpreter.h"
#include "runtime/data/cifar.h"
#include "runtime/data/mnist.h"
#include "runtime/data/preprocess.h"

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
  bool ok = spec.dataset == "mnist"
                ? any_exists({d / "train-images-idx3-ubyte.gz", d / "train-images-idx3-ubyte"})
                : any_exists({d / "cifar-10-batches-bin" / "data_batch_1.bin", d / "data_batch_1.bin"});
  if (!ok)
    throw MissingDataError("the " + spec.dataset + " data is not in " + spec.data_dir +
                           " (spec " + spec.file + "): run `kiln data prepare --from ../shared/data` "
                           "(local copies) or `kiln data prepare` (download) in the repository first");
}

data::LabeledImages load_raw(const TrainSpec& spec, const std::string& split) {
  require_data(spec);
  return spec.dataset == "mnist" ? data::load_mnist_split(spec.data_dir, split == "test" ? "t10k" : split)
                                 : data::load_cifar10(spec.data_dir, split);
}

data::Dataset make_dataset(const TrainSpec& spec, const data::LabeledImages& raw) {
  return data::Dataset::make(preprocess_images(spec, raw.images), prepare_labels(spec, raw.labels, 10));
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
  return data::scale_unit(images);
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
  data::LabeledImages raw = load_raw(spec, split);
  if (class_names) *class_names = raw.class_names;
  return make_dataset(spec, raw);
}

SpecData load_spec_data(const TrainSpec& spec, int64_t train_subset, int64_t test_subset) {
  SpecData out;
  int64_t tr = train_subset > 0 ? train_subset : spec.train_subset;
  int64_t te = test_subset > 0 ? test_subset : spec.test_subset;
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

int64_t training_max_batch(const TrainSpec& spec, int64_t train_size) {
  return spec.full_batch ? train_size : std::min(spec.batch_size, train_size);
}

CompiledModel compile_model(Graph model, const TrainSpec* spec, int64_t max_batch, int threads,
                            const codegen::CodegenOptions& copts, bool distributed) {
  CompiledModel m;
  auto inputs = model.inputs();
  if (inputs.size() != 2)
    throw std::runtime_error("graph '" + model.name + "' has " + std::to_string(inputs.size()) +
                             " inputs; training needs two (the images and their labels)");
  std::string a = model.node(inputs[0]).name, b = model.node(inputs[1]).name;
  m.features_input = b == "x" ? b : a;
  m.labels_input = b == "x" ? a : b;
  auto t0 = std::chrono::steady_clock::now();
  if (spec) {
    apply_trainable_patterns(model, *spec);
    TrainStepConfig config = train_step_config(*spec);
    m.graphs = codegen::program_graphs(std::move(model), &config, distributed);
  } else {
    m.graphs = codegen::program_graphs(std::move(model), nullptr);
  }
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
  j["data"]["dir"] = fs::absolute(spec.data_dir).string();
  if (!spec.init_from.empty()) j["init_from"] = fs::absolute(spec.init_from).string();
  auto& o = j["optimizer"];
  if (!is_builtin_update_rule(spec.optimizer.kind)) o["kind"] = fs::absolute(spec.optimizer.kind).string();
  o["lr"] = spec.optimizer.lr;
  if (!spec.optimizer.hyperparameters.empty()) o["hyperparameters"] = spec.optimizer.hyperparameters;
  else o.erase("hyperparameters");
  return j.dump(2);
}

}  // namespace kiln::driver
