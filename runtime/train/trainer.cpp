#include "runtime/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "runtime/data/batcher.h"
#include "runtime/data/sha256.h"
#include "runtime/file_io.h"
#include "runtime/report/plot.h"
#include "runtime/report/progress.h"

namespace kiln::train {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kLr = "lr";
constexpr const char* kFirstSample = "first_sample";

const EntryInfo& need_entry(const Program& p, const std::string& name) {
  const EntryInfo* e = p.entry(name);
  if (!e) throw std::runtime_error("program '" + p.info().name + "' has no " + name + " entry point");
  return *e;
}

int output_index(const EntryInfo& e, const std::string& name) {
  for (size_t i = 0; i < e.outputs.size(); ++i)
    if (e.outputs[i].name == name) return static_cast<int>(i);
  return -1;
}

}  // namespace

// A data tensor fits an entry input when dtypes agree and the shapes agree
// after the leading (batch) dimension.
void check_fits(const EntryInfo& e, const TensorInfo& in, const Tensor& t, const char* what) {
  auto want = in.shape;
  bool ok = t.dtype() == in.type && t.rank() == static_cast<int>(want.size()) && !want.empty();
  for (size_t i = 1; ok && i < want.size(); ++i) ok = want[i] == t.dim(static_cast<int>(i));
  if (!ok) {
    std::vector<int64_t> got = t.shape();
    if (!got.empty()) got[0] = -1;
    throw std::runtime_error(e.name + " input '" + in.name + "' is " + elem_type_name(in.type) + " " +
                             shape_string(in.shape) + ", but the data set's " + what + " are " +
                             elem_type_name(t.dtype()) + " " + shape_string(got));
  }
}

void feed_inputs(const EntryInfo& e, const std::vector<std::pair<std::string, const void*>>& named,
                 std::vector<const void*>& in) {
  in.clear();
  for (const TensorInfo& t : e.inputs) {
    const void* p = nullptr;
    for (auto& [name, ptr] : named)
      if (name == t.name) p = ptr;
    if (!p) {
      std::string fed;
      for (auto& [name, ptr] : named) fed += (fed.empty() ? "'" : ", '") + name + "'";
      throw std::runtime_error(e.name + " has an input '" + t.name + "' the trainer cannot feed (it feeds " + fed + ")");
    }
    in.push_back(p);
  }
}

double read_scalar(const void* at, ElemType type) {
  const auto* p = static_cast<const uint8_t*>(at);
  switch (type) {
    case ElemType::f32: { float v; std::memcpy(&v, p, 4); return v; }
    case ElemType::f64: { double v; std::memcpy(&v, p, 8); return v; }
    case ElemType::i32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case ElemType::i64: { int64_t v; std::memcpy(&v, p, 8); return static_cast<double>(v); }
    default: throw std::runtime_error("unsupported scalar output type");
  }
}

namespace {

// Output buffers of an entry, each sized for the program's maximum batch.
struct Outputs {
  std::vector<std::vector<uint8_t>> storage;
  std::vector<void*> ptrs;
  Outputs(const EntryInfo& e, int64_t max_batch) {
    for (const TensorInfo& t : e.outputs) storage.emplace_back(static_cast<size_t>(std::max<int64_t>(t.bytes(max_batch), 8)));
    for (auto& s : storage) ptrs.push_back(s.data());
  }
  double scalar(int i, ElemType type) const { return read_scalar(storage[static_cast<size_t>(i)].data(), type); }
};

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

EvalSums evaluate_rows(Program& program, const data::Dataset& data, const std::string& features_input,
                       const std::string& labels_input, int64_t begin, int64_t end) {
  const EntryInfo& e = need_entry(program, "eval_step");
  int loss_i = output_index(e, "loss"), correct_i = output_index(e, "correct");
  if (loss_i < 0) throw std::runtime_error("eval_step has no \"loss\" output");
  const int64_t max_batch = program.info().max_batch, n = data.size();
  Tensor sample;
  for (const TensorInfo& t : e.inputs) {
    if (t.name == features_input) check_fits(e, t, data.model_sample(sample), "features");
    if (t.name == labels_input) check_fits(e, t, data.labels, "labels");
  }
  const size_t y_row = n ? data.labels.nbytes() / static_cast<size_t>(n) : 0;
  Outputs out(e, max_batch);
  std::vector<const void*> in;
  EvalSums r;
  Tensor decoded;  // a data set of stored bytes: this chunk's rows as the model reads them
  for (int64_t at = begin; at < end; at += max_batch) {
    int64_t b = std::min(max_batch, end - at);
    const void* x = data.model_rows_at(at, b, decoded);
    const auto* y = static_cast<const uint8_t*>(data.labels.raw()) + static_cast<size_t>(at) * y_row;
    feed_inputs(e, {{features_input, x}, {labels_input, y}}, in);
    program.run("eval_step", b, in, out.ptrs);
    r.loss_sum += out.scalar(loss_i, e.outputs[static_cast<size_t>(loss_i)].type) * static_cast<double>(b);
    if (correct_i >= 0) r.correct += out.scalar(correct_i, e.outputs[static_cast<size_t>(correct_i)].type);
  }
  if (correct_i < 0) r.correct = NAN;
  r.samples = end - begin;
  return r;
}

EvalResult eval_result(const EvalSums& s) {
  EvalResult r;
  r.samples = s.samples;
  r.loss = s.samples ? s.loss_sum / static_cast<double>(s.samples) : NAN;
  r.accuracy = s.samples ? s.correct / static_cast<double>(s.samples) : NAN;
  return r;
}

EvalResult evaluate(Program& program, const data::Dataset& data, const std::string& features_input,
                    const std::string& labels_input) {
  return eval_result(evaluate_rows(program, data, features_input, labels_input, 0, data.size()));
}

LocalStepRunner::LocalStepRunner(Program& program, const data::Dataset& train, std::string features_input,
                                 std::string labels_input)
    : program_(program), features_(std::move(features_input)), labels_(std::move(labels_input)) {
  const EntryInfo& step = need_entry(program_, "train_step");
  loss_i_ = output_index(step, "loss");
  correct_i_ = output_index(step, "correct");
  if (loss_i_ < 0) throw std::runtime_error("train_step has no \"loss\" output");
  bool has_x = false, has_y = false;
  Tensor sample;
  for (const TensorInfo& t : step.inputs) {
    if (t.name == features_) check_fits(step, t, train.model_sample(sample), "features"), has_x = true;
    else if (t.name == labels_) check_fits(step, t, train.labels, "labels"), has_y = true;
  }
  if (!has_x || !has_y) throw std::runtime_error("train_step has no input named '" + (has_x ? labels_ : features_) + "'");
  Outputs out(step, program_.info().max_batch);
  out_storage_ = std::move(out.storage);
  for (auto& o : out_storage_) out_.push_back(o.data());
}

void StepScalars::append_to(std::vector<std::pair<std::string, const void*>>& named) const {
  named.push_back({kLr, &lr});
  for (auto& [name, value] : inputs) named.push_back({name, &value});
}

StepResult LocalStepRunner::step(const data::Batch& batch, const StepScalars& scalars, bool stop) {
  const EntryInfo& e = *program_.entry("train_step");
  const int64_t first_sample = 0;
  std::vector<std::pair<std::string, const void*>> named = {
      {features_, batch.features().raw()}, {labels_, batch.labels().raw()}, {kFirstSample, &first_sample}};
  scalars.append_to(named);
  feed_inputs(e, named, in_);
  program_.run("train_step", batch.size(), in_, out_);
  auto scalar = [&](int i) { return read_scalar(out_[static_cast<size_t>(i)], e.outputs[static_cast<size_t>(i)].type); };
  StepResult r;
  r.loss = scalar(loss_i_);
  if (correct_i_ >= 0) r.correct = scalar(correct_i_);
  r.stop = stop;
  return r;
}

EvalResult LocalStepRunner::evaluate(const data::Dataset& data) { return train::evaluate(program_, data, features_, labels_); }

std::vector<NamedTensor> read_persistent(const Program& program, bool state) {
  std::vector<NamedTensor> out;
  auto& prog = const_cast<Program&>(program);  // persistent() is non-const; we only read
  for (const TensorInfo& t : program.info().persistent) {
    if (t.state != state) continue;
    Tensor v(t.type, t.shape);
    std::memcpy(v.raw(), prog.persistent(t.name), v.nbytes());
    out.push_back({t.name, std::move(v)});
  }
  return out;
}

void write_persistent(Program& program, const std::vector<NamedTensor>& tensors, bool allow_unknown) {
  for (const NamedTensor& nt : tensors) {
    const TensorInfo* info = nullptr;
    for (const TensorInfo& t : program.info().persistent)
      if (t.name == nt.name) info = &t;
    if (!info) {
      if (allow_unknown) continue;
      throw std::runtime_error("program '" + program.info().name + "' has no param or state named '" + nt.name + "'");
    }
    if (nt.value.dtype() != info->type || nt.value.shape() != info->shape)
      throw std::runtime_error("'" + nt.name + "' is " + elem_type_name(nt.value.dtype()) + " " +
                               shape_string(nt.value.shape()) + " but the program's is " + elem_type_name(info->type) +
                               " " + shape_string(info->shape));
    std::memcpy(program.persistent(nt.name), nt.value.raw(), nt.value.nbytes());
  }
}

Trainer::Trainer(Program& program, const data::Dataset& train, TrainerOptions options, StepRunner* runner)
    : program_(program), runner_(runner), train_(train), opt_(std::move(options)) {
  if (!runner_) {
    own_runner_ = std::make_unique<LocalStepRunner>(program_, train_, opt_.features_input, opt_.labels_input);
    runner_ = own_runner_.get();
  }
  need_entry(program_, "eval_step");
  int64_t batch = opt_.batch_size == 0 ? train_.size() : std::min(opt_.batch_size, train_.size());
  if (batch > program_.info().max_batch)
    throw std::runtime_error("batches of " + std::to_string(batch) + " exceed the maximum batch size " +
                             std::to_string(program_.info().max_batch) + " the program was compiled for");
  if (opt_.epochs < 1) throw std::runtime_error("epochs must be at least 1");
}

void Trainer::add_eval_set(const std::string& name, const data::Dataset& data) { eval_sets_.push_back({name, &data}); }

Checkpoint Trainer::checkpoint() const {
  Checkpoint c;
  c.graph_json = opt_.graph_json;
  c.spec_json = opt_.spec_json;
  c.params = read_persistent(program_, false);
  c.optimizer_state = read_persistent(program_, true);
  c.step = steps_;
  c.data_position = position_;
  nlohmann::json m = {{"history", report::to_json(history_)},
                      {"partial_epoch",
                       {{"loss_sum", partial_.loss_sum}, {"correct", partial_.correct},
                        {"seconds", partial_.seconds}, {"step_seconds", partial_.step_seconds},
                        {"samples", partial_.samples}}}};
  c.metrics_json = m.dump();
  return c;
}

void Trainer::resume(const Checkpoint& c) {
  write_persistent(program_, c.params);
  write_persistent(program_, c.optimizer_state);
  steps_ = c.step;
  position_ = c.data_position;
  history_.clear();
  partial_ = {};
  if (!c.metrics_json.empty()) {
    auto m = nlohmann::json::parse(c.metrics_json);
    if (m.contains("history")) history_ = report::history_from_json(m["history"]);
    if (m.contains("partial_epoch")) {
      auto& p = m["partial_epoch"];
      partial_.loss_sum = p.value("loss_sum", 0.0);
      partial_.correct = p.value("correct", 0.0);
      partial_.seconds = p.value("seconds", 0.0);
      partial_.step_seconds = p.value("step_seconds", partial_.seconds);
      partial_.samples = p.value("samples", int64_t{0});
    }
  }
  resumed_ = true;
  read_step_log();
}

void Trainer::check_finite(int64_t epoch, int64_t step) const {
  for (const TensorInfo& t : program_.info().persistent) {
    if (t.type != ElemType::f32) continue;
    const float* p = static_cast<const float*>(const_cast<Program&>(program_).persistent(t.name));
    int64_t n = t.bytes(1) / 4;
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(p[i]))
        throw NumericsError("non-finite value " + number(p[i]) + " in " + (t.state ? "optimizer state '" : "param '") +
                                t.name + "' (element " + std::to_string(i) + ") after epoch " + std::to_string(epoch) +
                                ", step " + std::to_string(step),
                            epoch, step);
  }
}

void Trainer::save(const std::string& file, TrainResult& result) {
  if (opt_.out_dir.empty()) return;
  result.checkpoint = (std::filesystem::path(opt_.out_dir) / file).string();  // every rank knows where rank 0 saved
  if (!runner_->writes_files()) return;
  std::filesystem::create_directories(opt_.out_dir);
  save_checkpoint(result.checkpoint, checkpoint());
}

std::string persistent_digest(Program& program) {
  std::vector<uint8_t> bytes;
  for (const TensorInfo& t : program.info().persistent) {
    const auto* p = static_cast<const uint8_t*>(program.persistent(t.name));
    bytes.insert(bytes.end(), p, p + t.bytes(1));
  }
  return data::sha256_hex(bytes);
}

// A resumed run's steps.csv keeps the rows up to the checkpoint's step.
void Trainer::read_step_log() {
  step_log_.clear();
  if (opt_.out_dir.empty()) return;
  std::FILE* f = std::fopen((std::filesystem::path(opt_.out_dir) / "steps.csv").c_str(), "r");
  if (!f) return;
  char line[256];
  long long step;
  double loss, lr;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "%lld,%lf,%lf", &step, &loss, &lr) == 3 && step <= steps_) step_log_.push_back({step, loss, lr});
  std::fclose(f);
}

void Trainer::write_metrics() const {
  if (opt_.out_dir.empty() || !runner_->writes_files()) return;
  std::filesystem::create_directories(opt_.out_dir);
  auto path = [&](const char* f) { return (std::filesystem::path(opt_.out_dir) / f).string(); };
  std::string steps = "step,loss,lr\n";
  char row[96];
  for (const report::StepPoint& r : step_log_) {
    std::snprintf(row, sizeof row, "%lld,%.9g,%.9g\n", static_cast<long long>(r.step), r.loss, r.lr);
    steps += row;
  }
  write_file_atomic(path("steps.csv"), std::span(reinterpret_cast<const uint8_t*>(steps.data()), steps.size()));
  std::string csv = report::to_csv(history_), json = report::to_json(history_).dump(2) + "\n";
  write_file_atomic(path("metrics.csv"), std::span(reinterpret_cast<const uint8_t*>(csv.data()), csv.size()));
  write_file_atomic(path("metrics.json"), std::span(reinterpret_cast<const uint8_t*>(json.data()), json.size()));
}

TrainResult Trainer::run() {
  data::BatcherOptions bo;
  bo.batch_size = opt_.batch_size;
  bo.seed = opt_.seed;
  bo.transform = opt_.batch_transform;
  bo.epochs = opt_.epochs;
  data::Batcher batcher(train_, bo);
  if (resumed_) batcher.restore(position_);
  position_ = batcher.position();

  TrainResult result;
  const bool has_correct = output_index(need_entry(program_, "eval_step"), "correct") >= 0;
  for (int64_t epoch = position_.epoch; epoch < opt_.epochs; ++epoch) {
    const int64_t e1 = epoch + 1;
    std::unique_ptr<report::Progress> bar;
    if (opt_.progress)
      bar = std::make_unique<report::Progress>("epoch " + std::to_string(e1) + "/" + std::to_string(opt_.epochs),
                                               batcher.batches_per_epoch());
    int64_t done = position_.next_batch;
    // The epoch's wall time runs while batches are drawn and stepped: the
    // loader's waits count, the evaluation after the epoch does not.
    auto wall_from = Clock::now();
    auto add_wall_time = [&] {
      const auto now = Clock::now();
      partial_.seconds += std::chrono::duration<double>(now - wall_from).count();
      wall_from = now;
    };
    while (auto batch = batcher.next()) {
      const int64_t b = batch->size();
      const StepScalars scalars = opt_.step_scalars(steps_);
      const float lr = scalars.lr;
      auto t0 = Clock::now();
      const StepResult sr = runner_->step(*batch, scalars, opt_.stop && opt_.stop->load());
      partial_.step_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      ++steps_;
      position_ = batcher.position();
      const double loss = sr.loss;
      if (!std::isfinite(loss))
        throw NumericsError("training loss is " + number(loss) + " at epoch " + std::to_string(e1) + ", step " +
                                std::to_string(steps_) + " (batch " + std::to_string(batch->index + 1) + " of " +
                                std::to_string(batcher.batches_per_epoch()) + " in the epoch, lr " + number(lr) + ")",
                            e1, steps_);
      if (opt_.check_numerics) check_finite(e1, steps_);
      step_log_.push_back({steps_, loss, lr});
      partial_.loss_sum += loss * static_cast<double>(b);
      partial_.correct += std::isnan(sr.correct) ? 0 : sr.correct;
      partial_.samples += b;
      ++done;
      if (bar) bar->update(done, partial_.samples, partial_.loss_sum / static_cast<double>(partial_.samples));
      if (opt_.after_step) opt_.after_step(steps_);
      if (opt_.max_steps > 0 && steps_ >= opt_.max_steps) break;
      if (sr.stop || (!runner_->stop_needs_agreement() && opt_.stop && opt_.stop->load())) {
        if (bar) bar->finish();
        add_wall_time();
        save("interrupted.ckpt", result);
        result.interrupted = true;
        result.history = history_;
        result.steps = steps_;
        return result;
      }
    }
    add_wall_time();
    position_ = batcher.position();
    if (bar) bar->finish();

    report::EpochMetrics m;
    m.epoch = static_cast<int>(e1);
    m.seconds = partial_.seconds;
    m.step_seconds = partial_.step_seconds;
    m.train_loss = partial_.samples ? partial_.loss_sum / static_cast<double>(partial_.samples) : NAN;
    m.train_acc = has_correct && partial_.samples ? partial_.correct / static_cast<double>(partial_.samples) : NAN;
    for (auto& [name, set] : eval_sets_) {
      EvalResult r = runner_->evaluate(*set);
      (name == "val" ? m.val_loss : m.test_loss) = r.loss;
      (name == "val" ? m.val_acc : m.test_acc) = r.accuracy;
    }
    history_.push_back(m);
    partial_ = {};
    // Hashing every param is work: done only when a runner compares ranks or the digest is printed.
    std::string digest;
    auto digest_once = [&]() -> const std::string& {
      if (digest.empty()) digest = persistent_digest(program_);
      return digest;
    };
    runner_->check_epoch(digest_once, e1);
    if (opt_.log) {
      std::fprintf(opt_.log, "%s\n", report::seed_format(m).c_str());
      if (opt_.print_digest)
        std::fprintf(opt_.log, "params digest after epoch %lld: %s\n", static_cast<long long>(e1), digest_once().c_str());
      std::fflush(opt_.log);
    }
    write_metrics();
    bool last = e1 == opt_.epochs || (opt_.max_steps > 0 && steps_ >= opt_.max_steps);
    if (last) {
      save("final.ckpt", result);
      break;
    } else if (opt_.checkpoint_every > 0 && e1 % opt_.checkpoint_every == 0) save("checkpoint.ckpt", result);
  }
  result.history = history_;
  result.step_log = step_log_;
  result.steps = steps_;
  return result;
}

}  // namespace kiln::train
