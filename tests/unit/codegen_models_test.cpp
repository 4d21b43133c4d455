// Whole forward programs (the experiments' graphs) against the interpreter,
// and --check-numerics: it passes on correct code and names the JSON node of
// a kernel that computes the wrong thing.
#include <doctest/doctest.h>

#include <cmath>

#include "compiler/codegen/check_numerics.h"
#include "compiler/codegen/jit.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/interp/interpreter.h"
#include "tests/unit/test_util.h"

using namespace kiln;

namespace {

Graph graph_file(const char* name) { return load_graph(std::string(KILN_SOURCE_DIR) + "/graphs/" + name); }

// Every output of predict and eval_step at `batch` (< max_batch) within
// 1e-5 x max |interp| of the interpreter.
void check_forward(const Graph& g, int64_t batch, int64_t max_batch) {
  auto cp = codegen::compile_entries(g.name, lower::forward_entries(g), {.max_batch = max_batch});
  Program prog(cp->info());
  auto params = interp::init_params(g);
  for (const char* entry : {"predict", "eval_step"}) {
    const lower::Entry* e = cp->loops().entry(entry);
    REQUIRE(e != nullptr);
    auto feeds = codegen::random_feeds(*e, batch, 7);
    if (g.find("x") != kNoNode) {  // image-like inputs in [0, 1), as the data sets give
      for (auto& v : feeds.at("x").data) v = (v + 1) / 2;
    }
    feeds.insert(params.begin(), params.end());
    auto got = codegen::run_entry(prog, entry, batch, feeds);
    std::vector<std::string> names;
    for (auto& t : e->outputs) names.push_back(t.name);
    auto want = interp::Interpreter(g, interp::Precision::f32).run(feeds, names);
    for (auto& name : names) {
      INFO(g.name << " " << std::string(entry) << " output " << name);
      const auto &x = got.at(name), &r = want.at(name);
      REQUIRE(x.shape == r.shape);
      double max_ref = 0, max_diff = 0;
      for (size_t i = 0; i < r.data.size(); ++i) {
        max_ref = std::max(max_ref, std::fabs(r.data[i]));
        max_diff = std::max(max_diff, std::fabs(x.data[i] - r.data[i]));
      }
      INFO("max diff " << max_diff << ", max |ref| " << max_ref);
      CHECK(max_diff <= 1e-5 * max_ref);
      if (name != "correct") CHECK(max_ref > 0);  // random labels may all be missed
    }
  }
}

}  // namespace

TEST_CASE("codegen: the MLP forward program matches the interpreter at a partial batch") {
  check_forward(graph_file("mlp_cifar10.json"), 5, 16);
}

TEST_CASE("codegen: the CNN and transfer forward programs match the interpreter at a partial batch") {
  check_forward(graph_file("cnn_mnist.json"), 3, 8);
  check_forward(graph_file("cnn_mnist_transfer.json"), 2, 4);
}

TEST_CASE("codegen: check-numerics passes every kernel of the CNN and names a wrong one") {
  // One kernel per conv node (a Winograd convolution has four: winograd_test.cpp checks them).
  test::ScopedEnv one_kernel("KILN_NO_WINOGRAD");
  Graph g = graph_file("cnn_mnist.json");
  auto entries = lower::forward_entries(g);
  // One kernel per node (no fusion): the counts below and the patched bias-add kernel assume it.
  auto program = lower::lower_program(g.name, entries, {.max_batch = 4, .fuse = false});
  auto params = interp::init_params(g);
  {
    auto cp = codegen::CompiledProgram::compile(program);
    Program prog(cp->info());
    auto feeds = codegen::random_feeds(*cp->loops().entry("eval_step"), 3, 1);
    feeds.insert(params.begin(), params.end());
    auto report = codegen::check_numerics(*cp, prog, "eval_step", 3, feeds);
    INFO(report.message);
    CHECK(report.ok);
    // Every kernel ran; every kernel but the output copies checked its node
    // (the convs read their windows: no im2col kernels filling scratch).
    const lower::Entry* e = cp->loops().entry("eval_step");
    CHECK(report.kernels_run == static_cast<int>(e->kernels.size()));
    // (nor the kernels that pack a filter once: they compute no node)
    int packs = 0;
    for (int k : e->kernels) packs += cp->loops().kernels[static_cast<size_t>(k)].gemm.packs_b;
    CHECK(packs > 0);
    CHECK(report.nodes_checked == static_cast<int>(e->kernels.size() - e->outputs.size()) - packs);
  }
  // Scale what conv2's bias add stores by 1.5: the checker must stop there.
  lower::Program broken = program;
  bool patched = false;
  for (auto& k : broken.kernels) {
    if (k.origin != "conv2" || k.node.find("add") == std::string::npos) continue;
    std::function<void(std::vector<lower::Stmt>&)> patch = [&](std::vector<lower::Stmt>& body) {
      for (auto& s : body) {
        if (s.kind == lower::StmtKind::Store) {
          s.value = lower::binary(lower::Op::Mul, s.value, lower::c_float(1.5));
          patched = true;
        }
        patch(s.body);
      }
    };
    patch(k.body);
  }
  REQUIRE(patched);
  auto cp = codegen::CompiledProgram::compile(broken);
  Program prog(cp->info());
  auto feeds = codegen::random_feeds(*cp->loops().entry("eval_step"), 3, 1);
  feeds.insert(params.begin(), params.end());
  auto report = codegen::check_numerics(*cp, prog, "eval_step", 3, feeds);
  CHECK_FALSE(report.ok);
  CHECK(report.origin == "conv2");
  CHECK(report.op == "add");
  // x * 1.5 - x = 0.5 x: the worst difference is half the largest value.
  CHECK(report.max_abs_diff == doctest::Approx(0.5 * report.max_abs_ref).epsilon(1e-5));
  CHECK(report.message.find("JSON node 'conv2'") != std::string::npos);
}
