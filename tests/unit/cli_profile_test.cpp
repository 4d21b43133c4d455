// kiln profile: the per-kernel table of a compiled training step, and the
// work (FLOPs) it relates each kernel's time to.
#include <doctest/doctest.h>

#include <cstdio>
#include <sstream>

#include "compiler/codegen/profile.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/lower/lower_program.h"
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
    // The first layer's matmul: its JSON node and a rate.
    if (kernel.find("_h") != std::string::npos && node == "h" && line.find(" -") == std::string::npos) matmul = true;
  }
  CHECK(rows == 27);  // the fused MLP train step (fusion_test.cpp asserts the same count)
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
  // One thread: no pool, no line.
  auto one = test::run_kiln("profile graphs/mlp_cifar10.json --train graphs/experiments/e2_mlp_autodiff_b64.json "
                            "--steps 1 --batch 8 --threads 1");
  CHECK(one.output.find("parallel: ") == std::string::npos);
}

TEST_CASE("cli: profile FLOPs: 2*M*N*K for a gemm at the run's batch, operations x elements for a loop") {
  Graph g = load_graph(test::source_path("graphs/mlp_cifar10.json"));
  // One kernel per node, so relu has a kernel of its own (fused, it shares the bias add's pass).
  auto p = lower::lower_program(g.name, lower::forward_entries(g), {.max_batch = 16, .fuse = false});
  bool gemm = false, relu = false;
  for (auto& k : p.kernels) {
    if (k.kind == lower::KernelKind::Gemm && k.node == "h") {
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
