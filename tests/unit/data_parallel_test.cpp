// Data-parallel training without MPI: the step cut into grad_step and
// apply_step computes the whole train_step's bits; the simulated ranks split
// batches as evenly as they go; buckets follow the gradients in reverse order
// and cut at their size; random numbers are numbered by the global row.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>

#include "compiler/driver/training_setup.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/interp/interpreter.h"
#include "runtime/dist/data_parallel.h"
#include "runtime/random/philox.h"
#include "tests/unit/test_util.h"

using namespace kiln;

namespace {

// Batch norm (running statistics the forward pass updates) and dropout.
const char* kBnDropout = R"({
  "format": "kiln.graph/1", "name": "bn_drop", "seed": 4,
  "inputs": {"x": {"shape": [-1, 6]}, "labels": {"shape": [-1], "dtype": "i32"}},
  "nodes": [
    {"name": "h", "layer": "dense", "inputs": ["x"], "units": 8},
    {"name": "bn", "layer": "batch_norm", "activation": "relu"},
    {"name": "drop", "layer": "dropout", "rate": 0.3},
    {"name": "out", "layer": "dense", "units": 3},
    {"name": "loss", "op": "sparse_softmax_cross_entropy", "inputs": ["out", "labels"]},
    {"name": "correct", "op": "correct_count", "inputs": ["out", "labels"]}
  ],
  "outputs": {"logits": "out", "loss": "loss", "correct": "correct"}
})";

data::Dataset toy_data(int64_t n) {
  Tensor x(ElemType::f32, {n, 6}), y(ElemType::i32, {n});
  for (int64_t i = 0; i < n * 6; ++i) x.data<float>()[i] = static_cast<float>((i * 37 % 23) - 11) / 7.0f;
  for (int64_t i = 0; i < n; ++i) y.data<int32_t>()[i] = static_cast<int32_t>(i * 7 % 3);
  return data::Dataset::make(std::move(x), std::move(y));
}

TrainSpec adam_spec() {
  TrainSpec s;
  s.name = "bn_drop";
  s.optimizer.kind = "adam";
  s.optimizer.lr = 0.01;
  s.batch_size = 10;
  s.seed = 3;
  return s;
}

train::TrainerOptions options(const driver::CompiledModel& m) {
  train::TrainerOptions o;
  o.batch_size = 10;
  o.epochs = 2;
  o.step_scalars = [](int64_t) { return train::StepScalars{0.01f, {}}; };
  o.features_input = m.features_input;
  o.labels_input = m.labels_input;
  o.progress = false;
  o.log = nullptr;
  return o;
}

// The params' digest after 2 epochs of 23 samples (batches of 10, 10, 3).
std::string train_digest(bool distributed, int simulated_ranks) {
  TrainSpec spec = adam_spec();
  auto m = driver::compile_model(parse_graph(kBnDropout), &spec, 10, 1, {}, distributed);
  driver::initialize(m, spec);
  data::Dataset d = toy_data(23);
  std::unique_ptr<dist::DataParallelRunner> runner;
  if (distributed)
    runner = std::make_unique<dist::DataParallelRunner>(*m.program, d, nullptr,
                                                        dist::DataParallelOptions{m.features_input, m.labels_input,
                                                                                  dist::kDefaultBucketBytes, simulated_ranks});
  train::Trainer t(*m.program, d, options(m), runner.get());
  t.run();
  return train::persistent_digest(*m.program);
}

}  // namespace

TEST_CASE("data parallel: grad_step then apply_step on one rank = train_step, bit for bit (batch norm, dropout, Adam)") {
  const std::string whole = train_digest(false, 0);
  CHECK(train_digest(true, 1) == whole);
  // More ranks: per-shard batch statistics, so other bits, but the same ones every time.
  const std::string four = train_digest(true, 4);
  CHECK(four != whole);
  CHECK(train_digest(true, 4) == four);
}

TEST_CASE("data parallel: buckets hold the gradients in the order the backward pass finishes them and cut at their size") {
  TrainSpec spec = adam_spec();
  auto m = driver::compile_model(parse_graph(kBnDropout), &spec, 10, 1, {}, true);
  // h/kernel 6x8, h/bias 8, bn gamma/beta 8 each, out/kernel 8x3, out/bias 3: 48 floats cut buckets at 12 floats.
  dist::BucketPlan plan = dist::BucketPlan::of(m.program->info(), 48);
  REQUIRE(plan.buckets.size() >= 3);
  CHECK(plan.elements == 6 * 8 + 8 + 8 + 8 + 8 * 3 + 3);
  // In the order the backward pass finishes them: each bucket can go out while it computes the next.
  const EntryInfo& grad = *m.program->entry("grad_step");
  int64_t at = 0;
  int last_ready = 0;
  for (const auto& b : plan.buckets) {
    CHECK(b.offset == at);
    CHECK((b.elements * 4 <= 48 || b.slots.size() == 1));  // only a single gradient may exceed the size
    at += b.elements;
    for (const auto& slot : b.slots) {
      const int ready = grad.output_ready[static_cast<size_t>(slot.output)];
      CHECK(ready >= last_ready);
      last_ready = ready;
    }
  }
  CHECK(grad.output_ready[static_cast<size_t>(plan.buckets.front().slots.front().output)] <
        static_cast<int>(grad.kernels.size()));
  CHECK(at == plan.elements);
  REQUIRE(plan.averaged.size() == 2);  // the running statistics the forward pass updates
  CHECK(plan.averaged_elements == 16);
  // A program compiled without --distributed has no halves to run.
  auto whole = driver::compile_model(parse_graph(kBnDropout), &spec, 10, 1);
  CHECK_THROWS_WITH_AS(dist::BucketPlan::of(whole.program->info(), 48), doctest::Contains("grad_step"), std::runtime_error);
}

TEST_CASE("data parallel: sums in rank order are ((r0 + r1) + r2), not another association") {
  // 1e8 + 1 - 1e8 in f32: left to right gives 0 (1e8 + 1 rounds to 1e8), another order gives 1.
  float a[1] = {1e8f}, b[1] = {1.0f}, c[1] = {-1e8f}, out[1];
  dist::sum_parts_in_order<float>({a, b, c}, out, 1);
  CHECK(out[0] == 0.0f);
  dist::sum_parts_in_order<float>({b, c, a}, out, 1);
  CHECK(out[0] == 0.0f);
  dist::sum_parts_in_order<float>({a, c, b}, out, 1);
  CHECK(out[0] == 1.0f);
}

TEST_CASE("random_uniform: rows are numbered from first_row, so a shard draws its rows of the whole batch") {
  Graph g = parse_graph(R"({
    "format": "kiln.graph/1", "name": "draws",
    "inputs": {"x": {"shape": [-1, 5]}, "step": {"shape": [], "dtype": "i64"}, "first": {"shape": [], "dtype": "i64"}},
    "nodes": [{"name": "u", "op": "random_uniform", "inputs": ["x", "step", "first"], "seed": 9, "stream": 2}],
    "outputs": {"u": "u"}
  })");
  auto draw = [&](int64_t rows, int64_t first) {
    std::map<std::string, interp::Value> in;
    in["x"] = interp::Value{DType::f32, {rows, 5}, std::vector<double>(static_cast<size_t>(rows * 5), 0.0)};
    in["step"] = interp::Value{DType::i64, {}, {3}};
    in["first"] = interp::Value{DType::i64, {}, {static_cast<double>(first)}};
    return interp::Interpreter(g).run(in).at("u").data;
  };
  auto whole = draw(6, 0), shard = draw(2, 4);
  REQUIRE(shard.size() == 10);
  for (size_t i = 0; i < shard.size(); ++i) CHECK(shard[i] == whole[20 + i]);
  CHECK(whole[20] == static_cast<double>(random::uniform(random::stream_key(9, 2), 3, 20)));
}

TEST_CASE("program: an entry run kernel by kernel computes what the entry function does, outputs ready on time") {
  TrainSpec spec = adam_spec();
  auto m = driver::compile_model(parse_graph(kBnDropout), &spec, 10, 1, {}, true);
  driver::initialize(m, spec);
  const EntryInfo& e = *m.program->entry("grad_step");
  REQUIRE(!e.kernels.empty());
  REQUIRE(e.output_ready.size() == e.outputs.size());
  data::Dataset d = toy_data(10);
  float lr = 0.01f;
  int64_t first = 0;
  float scale = 1;
  std::vector<const void*> in;
  train::feed_inputs(e, {{"x", d.features.raw()}, {"labels", d.labels.raw()}, {"lr", &lr}, {"first_sample", &first},
                         {"loss_scale", &scale}},
                     in);
  auto buffers = [&] {
    std::vector<std::vector<uint8_t>> b;
    for (const TensorInfo& t : e.outputs) b.emplace_back(static_cast<size_t>(t.bytes(10)), 0);
    return b;
  };
  auto whole = buffers(), stepwise = buffers();
  std::vector<void*> out_whole, out_step;
  for (auto& b : whole) out_whole.push_back(b.data());
  for (auto& b : stepwise) out_step.push_back(b.data());
  // Running statistics are updated by both runs: start each from the same state.
  auto state = train::read_persistent(*m.program, true);
  m.program->run("grad_step", 10, in, out_whole);
  train::write_persistent(*m.program, state);
  // Each output, when it says it is ready, already holds its final bytes.
  std::vector<std::vector<uint8_t>> at_ready(e.outputs.size());
  int calls = 0;
  m.program->run_kernelwise("grad_step", 10, in, out_step, [&](int done) {
    ++calls;
    for (size_t i = 0; i < e.outputs.size(); ++i)
      if (e.output_ready[i] == done) at_ready[i] = stepwise[i];
  });
  CHECK(calls == static_cast<int>(e.kernels.size()));
  for (size_t i = 0; i < e.outputs.size(); ++i) {
    INFO(e.outputs[i].name);
    CHECK(stepwise[i] == whole[i]);
    CHECK(at_ready[i] == whole[i]);
  }
  // Some gradient is final before the last kernel (what overlap relies on).
  CHECK(*std::min_element(e.output_ready.begin(), e.output_ready.end()) < static_cast<int>(e.kernels.size()));
}
