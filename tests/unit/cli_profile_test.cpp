// kiln profile: the per-kernel table of a compiled training step, and the
// work (FLOPs) it relates each kernel's time to.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <sstream>

#include "compiler/codegen/profile.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/lower/lower_program.h"
#include "runtime/data/npy.h"
#include "tests/unit/test_util.h"

using namespace kiln;

TEST_CASE("cli: kiln profile lists every kernel of the MLP train step, sorted, percentages summing to 100") {
  auto r = test::run_kiln("profile graphs/mlp_cifar10.json --train graphs/experiments/e2_mlp_autodiff_b64.json "
                          "--steps 2 --batch 8 --threads 1");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("train_step at batch 8 on 1 thread") != std::string::npos);
  CHECK(r.output.find("sum of intermediates") != std::string::npos);
  std::istringstream lines(r.output);
  std::string line;
  double percent = 0, last_total = 1e300;
  bool matmul = false, sorted = true;
  int rows = 0;
  while (std::getline(lines, line)) {
    if (line.size() < 2 || line[0] != 'k' || line.rfind("kernel ", 0) == 0 || line.find('%') == std::string::npos) continue;
    std::istringstream cols(line);
    std::string kernel, node, pct;
    long long calls;
    double total;
    cols >> kernel >> node >> calls >> total >> pct;
    ++rows;
    CHECK(calls == 2);
    percent += std::stod(pct);
    sorted = sorted && total <= last_total;
    last_total = total;
    // The first layer's matmul (its bias and relu in its epilogue: the layer's node, a) and a rate.
    if (kernel.ends_with("_h") && node == "a" && line.find(" -") == std::string::npos) matmul = true;
  }
  CHECK(rows == 25);  // the fused MLP train step (fusion_test.cpp asserts the same count)
  CHECK(sorted);
  CHECK(matmul);
  CHECK(percent == doctest::Approx(100).epsilon(0.03));
}

TEST_CASE("cli: kiln profile on 2 threads reports the hand-offs per step and the time lost waiting for workers") {
  auto r = test::run_kiln("profile graphs/mlp_cifar10.json --train graphs/experiments/e2_mlp_autodiff_b64.json "
                          "--steps 3 --batch 64 --threads 2");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  std::istringstream lines(r.output);
  std::string line;
  double handoffs = -1, waited = -1, share = -1, idle = -1;
  while (std::getline(lines, line))
    if (line.rfind("parallel: ", 0) == 0)
      std::sscanf(line.c_str(), "parallel: %lf hand-offs per step; the caller waited %lf ms per step for workers (%lf%% "
                  "of the step); workers idle %lf%%", &handoffs, &waited, &share, &idle);
  CHECK(handoffs >= 1);  // the GEMMs at least go to the pool
  CHECK(waited >= 0);
  CHECK(share >= 0);
  CHECK(share <= 100);
  CHECK(idle >= 0);
  CHECK(idle <= 100);
  // Each kernel row ends in the share of its time its caller waited for
  // workers: a percentage where it handed off (the fc1 GEMM does), else "-".
  CHECK(r.output.find("GFLOP/s  wait %") != std::string::npos);
  std::istringstream rows(r.output);
  int with_wait = 0, kernel_rows = 0;
  while (std::getline(rows, line)) {
    if (line.size() < 2 || line[0] != 'k' || line.rfind("kernel ", 0) == 0) continue;
    ++kernel_rows;
    const std::string last = line.substr(line.find_last_of(' ') + 1);
    if (last == "-") continue;
    REQUIRE(last.back() == '%');
    const double w = std::stod(last);
    CHECK(w >= 0);
    CHECK(w <= 100);
    ++with_wait;
  }
  CHECK(kernel_rows >= 10);
  CHECK(with_wait >= 1);
  CHECK(with_wait < kernel_rows);  // the small kernels run on the caller alone
  // One thread: no pool, no line.
  auto one = test::run_kiln("profile graphs/mlp_cifar10.json --train graphs/experiments/e2_mlp_autodiff_b64.json "
                            "--steps 1 --batch 8 --threads 1");
  CHECK(one.output.find("parallel: ") == std::string::npos);
  CHECK(one.output.find("wait %") == std::string::npos);
}

TEST_CASE("cli: profile FLOPs: 2*M*N*K for a gemm at the run's batch, operations x elements for a loop") {
  Graph g = load_graph(test::source_path("graphs/mlp_cifar10.json"));
  // One kernel per node, so relu has a kernel of its own (fused, it shares the bias add's pass).
  auto p = lower::lower_program(g.name, lower::forward_entries(g), {.max_batch = 16, .fuse = false});
  bool gemm = false, relu = false;
  for (auto& k : p.kernels) {
    if (k.kind == lower::KernelKind::Gemm && k.node == "h" && !k.gemm.packs_b) {
      CHECK(codegen::kernel_flops(k, 16) == 2.0 * 16 * 1024 * 3072);
      CHECK(codegen::kernel_flops(k, 4) == 2.0 * 4 * 1024 * 3072);
      gemm = true;
    }
    if (k.node == "a") {  // relu: one max per element
      CHECK(codegen::kernel_flops(k, 16) == 16.0 * 1024);
      relu = true;
    }
  }
  CHECK(gemm);
  CHECK(relu);
}

TEST_CASE("cli: kiln profile without a training spec times predict of a one-input graph (an imported model's shape)") {
  const std::string path = "/tmp/kiln_profile_forward_" + std::to_string(::getpid()) + ".json";
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f);
    std::fputs(R"({"format": "kiln.graph/1", "name": "one_input", "seed": 1,
      "inputs": {"x": {"shape": [-1, 3, 6, 6]}},
      "params": {"w": {"shape": [4, 3, 3, 3], "init": "he_normal"}, "b": {"shape": [4, 1, 1], "init": "zeros"}},
      "nodes": [{"name": "c", "op": "conv2d", "inputs": ["x", "w"], "layout": "NCHW", "padding": [1, 1, 1, 1]},
                {"name": "cb", "op": "add", "inputs": ["c", "b"]},
                {"name": "logits", "op": "relu", "inputs": ["cb"]}],
      "outputs": {"logits": "logits"}})",
               f);
    std::fclose(f);
  }
  // kiln run --time: the compiled forward pass, called once untimed and then N times.
  const std::string x = "/tmp/kiln_profile_forward_x_" + std::to_string(::getpid()) + ".npy";
  data::write_npy(x, Tensor(ElemType::f32, {2, 3, 6, 6}));
  auto timed = test::run_kiln("run " + path + " --input x=" + x + " --jit --time 3 --threads 2");
  INFO(timed.output);
  CHECK(timed.exit_code == 0);
  CHECK(timed.output.find("timed: batch 2, 2 threads: median ") != std::string::npos);
  CHECK(timed.output.find(" over 3 calls (min ") != std::string::npos);
  CHECK(timed.output.find("logits: f32[2,4,6,6]") != std::string::npos);
  auto no_jit = test::run_kiln("run " + path + " --input x=" + x + " --time 3 2>&1");
  CHECK(no_jit.exit_code != 0);
  CHECK(no_jit.output.find("--time times the compiled forward pass: add --jit") != std::string::npos);
  std::remove(x.c_str());

  auto r = test::run_kiln("profile " + path + " --steps 2 --threads 1");
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK(r.output.find("predict at batch 1 on 1 thread, 2 steps") != std::string::npos);
  // The filter's layout (w: OIHW -> HWIO) and its packed panels are computed
  // when the params change, not per step: not in the table.
  CHECK(r.output.find("2 kernels of values of the params alone (run when the params change) not timed") != std::string::npos);
  // train_step needs the spec: said, not crashed.
  auto t = test::run_kiln("profile " + path + " --entry train_step 2>&1");
  CHECK(t.exit_code != 0);
  CHECK(t.output.find("--entry train_step needs a training spec (--train SPEC)") != std::string::npos);
  std::remove(path.c_str());
}
