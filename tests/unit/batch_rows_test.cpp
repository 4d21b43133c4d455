// Batch slicing: the analysis that says an entry's output rows each read only
// the same input rows (compiler/passes/batch_rows.h), checked op by op on the
// registry's samples against the interpreter; and the runtime running a batch
// in slices (runtime/batch_slices.cpp) with the whole batch's results bit for
// bit.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>

#include "compiler/codegen/jit.h"
#include "compiler/interp/interpreter.h"
#include "compiler/ir/builder.h"
#include "compiler/ops/registry.h"
#include "compiler/passes/batch_rows.h"
#include "compiler/passes/modes.h"
#include "runtime/program.h"
#include "runtime/thread_pool.h"
#include "tests/unit/codegen_helpers.h"

using namespace kiln;
using interp::Value;
using kiln::codegen_test::JitCase;

namespace {

constexpr int64_t kRows = 3;

Value draw(const SampleInput& in, std::mt19937_64& rng) {
  Shape shape = in.shape;
  for (auto& d : shape)
    if (d == kOpenDim) d = kRows;
  Value v{in.dtype, shape, std::vector<double>(static_cast<size_t>(numel(shape)))};
  std::uniform_real_distribution<double> real(in.lo, in.hi);
  for (double& x : v.data) {
    const double r = real(rng);
    x = in.dtype == DType::boolean ? r > (in.lo + in.hi) / 2 : is_float(in.dtype) ? r : std::floor(r);
  }
  return v;
}

// Row r of a value whose axis 0 is the batch.
Value row(const Value& v, int64_t r) {
  const int64_t per_row = numel(v.shape) / v.shape[0];
  Value out{v.dtype, v.shape, {}};
  out.shape[0] = 1;
  out.data.assign(v.data.begin() + r * per_row, v.data.begin() + (r + 1) * per_row);
  return out;
}

// The analysis over the nodes the outputs need.
std::string rows_mixed_of(const Graph& g, const std::vector<NodeId>& outputs) {
  std::vector<bool> needed(g.nodes.size(), false);
  for (NodeId o : outputs) needed[static_cast<size_t>(o)] = true;
  for (size_t i = g.nodes.size(); i-- > 0;)
    if (needed[i])
      for (NodeId in : g.nodes[i].inputs) needed[static_cast<size_t>(in)] = true;
  return rows_mixed(g, needed, outputs);
}

}  // namespace

TEST_CASE("batch rows: every sample an op's properties call row-independent computes each row from that row alone") {
  // For each registry sample in inference form: where the analysis says the
  // rows are independent, the f64 interpreter's result on the whole batch
  // must equal, row by row, its result on each row alone.
  std::set<std::string> independent_ops;
  int independent = 0, mixed = 0;
  for (const OpDef& def : OpRegistry::get().all()) {
    for (size_t k = 0; k < def.samples.size(); ++k) {
      const OpSample& s = def.samples[k];
      // (a batch in any input: gather's indices beside a table)
      const bool batched = std::any_of(s.inputs.begin(), s.inputs.end(),
                                       [](const auto& in) { return !in.shape.empty() && in.shape[0] == kOpenDim; });
      if (!batched) continue;
      Graph g;
      g.name = "rows_" + def.name;
      GraphBuilder b(g);
      std::map<std::string, Value> feeds;
      std::mt19937_64 rng(7 + k);
      std::vector<NodeId> in;
      for (size_t i = 0; i < s.inputs.size(); ++i) {
        const std::string name = "x" + std::to_string(i);
        feeds[name] = draw(s.inputs[i], rng);
        in.push_back(b.input(name, {s.inputs[i].dtype, s.inputs[i].shape}));
      }
      g.outputs.push_back({"y", b.add(def.name, in, s.attrs)});
      specialize_mode(g, {Mode::infer});
      const std::string why = rows_mixed_of(g, {g.outputs[0].second});
      if (!why.empty()) {
        ++mixed;
        continue;
      }
      ++independent;
      independent_ops.insert(def.name);
      CAPTURE(def.name);
      CAPTURE(k);
      const Value whole = interp::Interpreter(g, interp::Precision::f64).run(feeds, {"y"}).at("y");
      REQUIRE(whole.shape[0] == kRows);
      for (int64_t r = 0; r < kRows; ++r) {
        std::map<std::string, Value> one = feeds;
        for (size_t i = 0; i < s.inputs.size(); ++i)
          if (!s.inputs[i].shape.empty() && s.inputs[i].shape[0] == kOpenDim)
            one["x" + std::to_string(i)] = row(feeds["x" + std::to_string(i)], r);
        const Value alone = interp::Interpreter(g, interp::Precision::f64).run(one, {"y"}).at("y");
        const Value expected = row(whole, r);
        REQUIRE(alone.shape == expected.shape);
        int64_t differ = 0;
        for (size_t j = 0; j < alone.data.size(); ++j)
          differ += !(alone.data[j] == expected.data[j] || (std::isnan(alone.data[j]) && std::isnan(expected.data[j])));
        CAPTURE(r);
        CHECK(differ == 0);
      }
    }
  }
  MESSAGE(independent << " samples row-independent, " << mixed << " mixing or not saying");
  CHECK(independent >= 60);
  for (const char* op : {"conv2d", "matmul", "softmax", "maxpool2d", "avgpool2d", "reshape", "transpose", "layer_norm",
                         "concat", "slice", "pad", "add", "relu", "reduce_sum", "gather", "gather_elements"})
    CHECK_MESSAGE(independent_ops.count(op), op << " has no sample the analysis calls row-independent");
}

TEST_CASE("batch rows: the analysis names the node that mixes rows") {
  Graph g;
  g.name = "mixing";
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {kOpenDim, 4}});
  NodeId w = b.param("w", {DType::f32, {4, 3}});
  NodeId y = b.add("matmul", {x, w});
  NodeId soft_features = b.add("softmax", {y}, {{"axis", -1}});
  NodeId soft_batch = b.add("softmax", {y}, {{"axis", 0}});
  NodeId mean = b.add("reduce_sum", {y}, {{"axes", {0}}, {"keepdims", true}});
  NodeId centred = b.add("sub", {y, mean});
  NodeId sum_rows = b.add("matmul", {x, y}, {{"transpose_a", true}});
  g.nodes[static_cast<size_t>(soft_batch)].name = "softmax_over_batch";
  g.nodes[static_cast<size_t>(mean)].name = "batch_sum";

  CHECK(rows_mixed_of(g, {soft_features}).empty());
  const std::string softmax_why = rows_mixed_of(g, {soft_batch});
  CHECK(softmax_why.find("'softmax_over_batch'") != std::string::npos);
  CHECK(softmax_why.find("combines elements along the batch dimension (axis 0)") != std::string::npos);
  const std::string sum_why = rows_mixed_of(g, {centred});
  CHECK(sum_why.find("'batch_sum'") != std::string::npos);
  CHECK(sum_why.find("reduces the batch dimension away") != std::string::npos);
  CHECK(rows_mixed_of(g, {sum_rows}).find("reduces the batch dimension away") != std::string::npos);
  // Every node counts when the entry needs them all.
  CHECK(!rows_mixed(g, std::vector<bool>(g.nodes.size(), true), {soft_features}).empty());
}

TEST_CASE("batch rows: an embedding lookup keeps rows apart") {
  // gather's rule (it reads its table anywhere along the axis) speaks for the
  // table alone (OpDef::mixing_inputs): each output row reads its own row of
  // indices, even when the indices have the table's rank.
  Graph g;
  g.name = "embedding";
  GraphBuilder b(g);
  NodeId tokens = b.input("tokens", {DType::i32, {kOpenDim, 6}});
  NodeId table = b.param("table", {DType::f32, {40, 8}});
  NodeId embedded = b.add("gather", {table, tokens}, {{"axis", 0}});
  NodeId scores = b.add("softmax", {embedded}, {{"axis", 1}});
  CHECK(rows_mixed_of(g, {embedded}).empty());
  CHECK(rows_mixed_of(g, {scores}).empty());
  NodeId over_batch = b.add("softmax", {embedded}, {{"axis", 0}});
  CHECK(rows_mixed_of(g, {over_batch}).find("combines elements along the batch dimension (axis 0)") != std::string::npos);
}

TEST_CASE("batch slices: a convolutional net run in slices gives the whole batch's results bit for bit") {
  JitCase t(8, 8);
  NodeId x = t.input("x", {-1, 10, 10, 16});
  NodeId conv = t.op("conv2d", {x, t.param("w", {3, 3, 16, 16})}, {{"padding", "same"}});
  NodeId act = t.op("relu", {t.op("add", {conv, t.param("b", {16})})});
  NodeId pooled = t.op("reduce_mean", {act}, {{"axes", {1, 2}}});
  t.out("probs", t.op("softmax", {t.op("matmul", {pooled, t.param("v", {16, 5})})}, {{"axis", -1}}));
  t.out("centred", t.op("sub", {pooled, t.op("reduce_mean", {pooled}, {{"axes", {0}}, {"keepdims", true}})}));

  auto forward = codegen::compile_entries(t.g.name, {{"predict", &t.g, {"probs"}, {}}, {"eval_step", &t.g, {"probs", "centred"}, {}}},
                                          {.max_batch = 8});
  ThreadPool pool(2);
  Program prog(forward->info(), &pool);
  CHECK(prog.entry("predict")->rows_mixed.empty());
  CHECK(prog.entry("eval_step")->rows_mixed.find("reduces the batch dimension away") != std::string::npos);
  CHECK_THROWS_WITH_AS(prog.set_batch_slice("eval_step", 2),
                       doctest::Contains("cannot run a batch in slices: node"), std::runtime_error);
  REQUIRE(prog.entry("init"));
  CHECK(prog.entry("init")->rows_mixed == "it writes params and state");

  const Value whole = codegen::run_entry(prog, "predict", 8, t.feeds).at("probs");
  for (int64_t rows : {3, 1, 7}) {  // 3 + 3 + 2: a short last slice
    CAPTURE(rows);
    prog.set_batch_slice("predict", rows);
    CHECK(prog.batch_slice("predict") == rows);
    const Value sliced = codegen::run_entry(prog, "predict", 8, t.feeds).at("probs");
    REQUIRE(sliced.data.size() == whole.data.size());
    CHECK(sliced.data == whole.data);
  }
  // A batch no larger than the slice runs whole; 0 turns slicing off.
  std::map<std::string, Value> five = t.feeds;
  Value& x5 = five.at("x");
  x5.data.resize(x5.data.size() / 8 * 5);
  x5.shape[0] = 5;
  const Value five_rows = codegen::run_entry(prog, "predict", 5, five).at("probs");
  CHECK(std::vector<double>(whole.data.begin(), whole.data.begin() + 25) == five_rows.data);
  prog.set_batch_slice("predict", 0);
  CHECK(prog.batch_slice("predict") == 0);
  CHECK(codegen::run_entry(prog, "predict", 5, five).at("probs").data == five_rows.data);
}

TEST_CASE("batch slices: tuning tries the whole batch and every power of two below it, and keeps a finished one") {
  JitCase t(8, 8);
  NodeId x = t.input("x", {-1, 6, 6, 4});
  NodeId conv = t.op("conv2d", {x, t.param("w", {3, 3, 4, 8})}, {{"padding", "same"}});
  t.out("y", t.op("relu", {conv}));
  auto forward = codegen::compile_entries(t.g.name, {{"predict", &t.g, {"y"}, {}}}, {.max_batch = 8});
  Program prog(forward->info());
  const Value whole = codegen::run_entry(prog, "predict", 8, t.feeds).at("y");

  const EntryInfo& e = *prog.entry("predict");
  std::vector<std::vector<uint8_t>> in_bytes, out_bytes;
  std::vector<const void*> ins;
  std::vector<void*> outs;
  for (const TensorInfo& ti : e.inputs)
    ins.push_back(in_bytes.emplace_back(codegen::to_bytes(t.feeds.at(ti.name), static_cast<DType>(ti.type))).data());
  for (const TensorInfo& ti : e.outputs) outs.push_back(out_bytes.emplace_back(static_cast<size_t>(ti.bytes(8))).data());
  auto times = prog.tune_batch_slice("predict", 8, ins, outs);
  REQUIRE(times.size() == 4);
  CHECK(times[0].rows == 8);
  CHECK(times[0].finished);
  CHECK(times[1].rows == 1);
  CHECK(times[2].rows == 2);
  CHECK(times[3].rows == 4);
  const int64_t chosen = prog.batch_slice("predict");
  bool chosen_finished = false;
  for (auto& c : times) chosen_finished = chosen_finished || ((c.rows == chosen || (chosen == 0 && c.rows == 8)) && c.finished);
  CHECK(chosen_finished);
  // The outputs hold the entry's results, also where there is nothing to
  // choose (one sample: a single call).
  std::vector<float> first(whole.data.size() / 8, -1.0f);
  std::vector<void*> first_out{first.data()};
  auto one = prog.tune_batch_slice("predict", 1, ins, first_out);
  REQUIRE(one.size() == 1);
  CHECK(one[0].rows == 1);
  CHECK(one[0].ms > 0);
  int64_t first_differ = 0;
  for (size_t i = 0; i < first.size(); ++i) first_differ += static_cast<double>(first[i]) != whole.data[i];
  CHECK(first_differ == 0);
  std::vector<float> tuned(whole.data.size());
  std::memcpy(tuned.data(), outs[0], tuned.size() * sizeof(float));
  int64_t differ = 0;
  for (size_t i = 0; i < tuned.size(); ++i) differ += static_cast<double>(tuned[i]) != whole.data[i];
  CHECK(differ == 0);
}
