// Gradient checks of the experiment graphs, the hand-written MLP gradients
// against autodiff, the seed's L2 formula being caught, and kiln gradcheck.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <random>
#include <sys/wait.h>

#include "test_util.h"
#include "compiler/autodiff/gradcheck.h"
#include "compiler/autodiff/train_step.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/frontend/train_spec.h"
#include "compiler/interp/interpreter.h"

using namespace kiln;
using interp::Value;

namespace {

GradcheckOptions quick() {
  GradcheckOptions o;
  o.samples = 3;
  o.full_check_limit = 16;
  o.batch = 2;
  o.max_redraws = 3;
  return o;
}

void expect_pass(const GradcheckReport& r) {
  INFO(r.text());
  CHECK(r.passed());
  for (const ParamCheck& p : r.params) {
    CHECK(p.autodiff_vs_fd < 1e-6);
    CHECK(p.coordinates >= std::min<int64_t>(p.elements, 3) - 1);
  }
}

std::map<std::string, Value> random_batch(const Graph& g, int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::map<std::string, Value> feeds;
  for (NodeId id : g.inputs()) {
    Shape s = g.node(id).type.shape;
    s[0] = n;
    Value v{DType::f32, s, std::vector<double>(static_cast<size_t>(numel(s)))};
    for (double& x : v.data) x = static_cast<float>(normal(rng));
    feeds[g.node(id).name] = v;
  }
  return feeds;
}

// Runs a command, appending what it prints to `output`; returns its exit status.
int run_command(const std::string& cmd, std::string& output) {
  auto r = kiln::test::run_command(cmd);
  output += r.output;
  return r.exit_code;
}

const std::string kGraphs = KILN_SOURCE_DIR "/graphs/";
const std::string kFixture = KILN_SOURCE_DIR "/tests/fixtures/mlp_seed_l2_formula.json";

}  // namespace

TEST_CASE("gradcheck: the MLP, the CNN and the transfer graph pass in f64") {
  expect_pass(gradcheck(load_graph(kGraphs + "mlp_cifar10.json"), quick()));
  expect_pass(gradcheck(load_graph(kGraphs + "cnn_mnist.json"), quick()));
  Graph transfer = load_graph(kGraphs + "cnn_mnist_transfer.json");
  GradcheckReport head_only = gradcheck(transfer, quick());
  expect_pass(head_only);
  CHECK(head_only.params.size() == 2);  // the base is frozen
  apply_train_spec(transfer, load_train_spec(kGraphs + "experiments/e4d_finetune.json"));
  GradcheckReport all = gradcheck(transfer, quick());
  expect_pass(all);
  CHECK(all.params.size() == 8);
}

TEST_CASE("gradcheck: the manual MLP's gradients equal autodiff's to 1e-5 relative in f32") {
  Graph manual = load_graph(kGraphs + "mlp_cifar10_manual.json");
  Graph g = build_gradient_graph(manual, /*use_handwritten_gradients=*/false);
  for (auto& [param, grad] : manual.gradients) g.outputs.push_back({"hand:" + manual.node(param).name, grad});
  auto feeds = interp::init_params(manual);
  for (auto& [k, v] : random_batch(manual, 8, 3)) feeds[k] = v;
  auto out = interp::Interpreter(g, interp::Precision::f32).run(feeds);
  for (const char* p : {"w1", "b1", "w2", "b2"}) {
    const Value &hand = out.at(std::string("hand:") + p), &ad = out.at(std::string("grad:") + p);
    double scale = 0, worst = 0;
    for (double a : ad.data) scale = std::max(scale, std::abs(a));
    REQUIRE(scale > 0);
    for (size_t i = 0; i < ad.data.size(); ++i)
      worst = std::max(worst, std::abs(hand.data[i] - ad.data[i]) / std::max(std::abs(ad.data[i]), 1e-3 * scale));
    INFO(p << ": max relative difference " << worst);
    CHECK(worst < 1e-5);
  }
  GradcheckReport report = gradcheck(manual, quick());
  INFO(report.text());
  CHECK(report.passed());
  for (const ParamCheck& p : report.params) {
    CHECK(p.handwritten);
    CHECK(p.handwritten_vs_autodiff < 1e-6);
    CHECK(p.handwritten_vs_fd < 1e-6);
  }
}

TEST_CASE("gradcheck: the seed's L2 formula (reg W instead of 2 reg W) is flagged, naming the L2 node") {
  GradcheckReport r = gradcheck(load_graph(kFixture), quick());
  CHECK_FALSE(r.passed());
  std::map<std::string, ParamCheck> by_name;
  for (auto& p : r.params) by_name[p.param] = p;
  CHECK(by_name.at("b1").handwritten_vs_autodiff < 1e-6);  // biases carry no L2 term
  CHECK(by_name.at("b2").handwritten_vs_autodiff < 1e-6);
  CHECK(by_name.at("w2").handwritten_vs_autodiff > 1e-3);
  CHECK(by_name.at("w1").autodiff_vs_fd < 1e-6);  // autodiff itself is right
  const std::string& why = by_name.at("w1").divergence;
  INFO(why);
  CHECK(why.find("%dw1_l2") != std::string::npos);
  CHECK(why.find("0.5 x d %l2/d w1") != std::string::npos);
  CHECK(why.find("%dw1_data (matmul): agrees with d %data_loss/d w1") != std::string::npos);
  // The backward intermediates before the faulty term agree with autodiff's cotangents.
  CHECK(why.find("%dhb = d loss/d %hb") != std::string::npos);
  CHECK(why.find("%da = d loss/d %a") != std::string::npos);
}

TEST_CASE("gradcheck: 3 training steps with the seed's gradients end elsewhere than with autodiff") {
  Graph fixture = load_graph(kFixture);
  TrainStepConfig hand_cfg, auto_cfg;
  auto_cfg.use_handwritten_gradients = false;
  Graph hand_step = build_train_step(fixture, hand_cfg), auto_step = build_train_step(fixture, auto_cfg);
  auto init = interp::init_params(fixture);
  std::map<std::string, Value> hand = init, autod = init;
  const double lr = 0.5, reg = 5e-6;
  for (int s = 0; s < 3; ++s) {
    for (auto* state : {&hand, &autod}) {
      const Graph& step = state == &hand ? hand_step : auto_step;
      auto feeds = *state;
      for (auto& [k, v] : random_batch(fixture, 2, 100 + static_cast<uint64_t>(s))) feeds[k] = v;
      feeds["lr"] = Value{DType::f32, {}, {lr}};
      if (!feeds.count("step")) feeds["step"] = Value{DType::i64, {}, {static_cast<double>(s)}};
      auto out = interp::Interpreter(step, interp::Precision::f64).run(feeds);
      for (auto& [target, value] : step.updates) (*state)[step.node(target).name] = out.at(next_value_name(step.node(target).name));
    }
    double max_diff = 0;
    for (size_t i = 0; i < hand.at("w1").data.size(); ++i)
      max_diff = std::max(max_diff, std::abs(hand.at("w1").data[i] - autod.at("w1").data[i]));
    CHECK(max_diff > 0);
    if (s == 0) {
      // One step from the same params: the two differ exactly by lr * reg * w1 (the missing half of 2 reg w1).
      const auto& w0 = init.at("w1").data;
      for (size_t i = 0; i < w0.size(); i += 9973)
        CHECK(hand.at("w1").data[i] - autod.at("w1").data[i] == doctest::Approx(lr * reg * w0[i]).epsilon(1e-6));
      CHECK(hand.at("b1").data == autod.at("b1").data);
    }
  }
}

TEST_CASE("kiln gradcheck: exit 0 on the manual MLP, exit 1 on the seed fixture naming the L2 node") {
  std::string ok_out, bad_out;
  CHECK(run_command(std::string(KILN_BINARY) + " gradcheck " + kGraphs + "mlp_cifar10_manual.json --samples 2 --batch 2", ok_out) == 0);
  CHECK(ok_out.find("PASS") != std::string::npos);
  CHECK(run_command(std::string(KILN_BINARY) + " gradcheck " + kFixture + " --samples 2 --batch 2", bad_out) == 1);
  CHECK(bad_out.find("%l2") != std::string::npos);
  CHECK(bad_out.find("FAIL") != std::string::npos);
}

TEST_CASE("kiln ir --stage optimized --dump-after-each names each pass with node counts") {
  std::string out;
  CHECK(run_command(std::string(KILN_BINARY) + " ir " + kGraphs + "cnn_mnist_transfer.json --stage optimized --spec " +
                        kGraphs + "experiments/e4c_transfer.json --dump-after-each", out) == 0);
  for (const char* pass : {"after fold-constants (round 1)", "after algebra (round 1)", "after cse (round 1)", "after dce (round 1)"})
    CHECK(out.find(pass) != std::string::npos);
  CHECK(out.find("update %head/kernel <- ") != std::string::npos);
  CHECK(out.find("conv2d_backprop") == std::string::npos);
  std::string grad;
  CHECK(run_command(std::string(KILN_BINARY) + " ir " + kGraphs + "mlp_cifar10.json --stage grad", grad) == 0);
  CHECK(grad.find("output grad:w1 = ") != std::string::npos);
}
