// kiln's generated GEMM next to OpenBLAS sgemm, in one run (a benchmark, not a test).
//
// For each shape M x K x N (and transpose form) it builds a one-matmul graph,
// compiles it with kiln's pipeline (lowering, LLVM codegen, ORC JIT), and
// times the program's entry and cblas_sgemm on the same operands: one warm-up,
// then the median of --repeats runs, at each thread count. It also checks the
// two results agree.
//
// Then it times whole compiled training steps (graphs/mlp_cifar10.json at
// batch 64, and with --big at the full batch of 50,000; graphs/cnn_mnist.json
// at batch 32) and prints their achieved GFLOP/s (FLOPs of every kernel,
// see `kiln profile`) beside OpenBLAS's GFLOP/s at the step's forward GEMM
// shape, measured in the same run.
//
//   kiln_bench_gemm [--repeats 5] [--threads 1,2] [--big] [--only NAME] [--no-steps]
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "compiler/codegen/jit.h"
#include "compiler/codegen/profile.h"
#include "compiler/driver/training_setup.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/ir/builder.h"
#include "runtime/program.h"
#include "runtime/thread_pool.h"

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);

namespace {

struct Shape3 {
  std::string name;
  int64_t m, k, n;
  bool ta = false, tb = false;
  bool big = false;  // only with --big (minutes of run time)
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <class F>
double median_seconds(int repeats, F&& f) {
  f();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    double t0 = now_s();
    f();
    t.push_back(now_s() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double blas_gflops(int64_t m, int64_t k, int64_t n, int threads, int repeats) {
  std::vector<float> a(static_cast<size_t>(m * k), 0.5f), b(static_cast<size_t>(k * n), 0.25f), c(static_cast<size_t>(m * n));
  openblas_set_num_threads(threads);
  double t = median_seconds(repeats, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                1.0f, a.data(), static_cast<int>(k), b.data(), static_cast<int>(n), 0.0f, c.data(), static_cast<int>(n));
  });
  return 2.0 * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n) / t * 1e-9;
}

struct StepCase {
  std::string name, graph, spec;
  int64_t batch;
  int64_t fwd_m, fwd_k, fwd_n;  // the step's largest forward GEMM (conv: as im2col)
  bool big = false;
};

// One compiled training step timed whole, its GFLOP/s from every kernel's FLOPs.
void time_step(const StepCase& c, int threads, int repeats) {
  std::string root = KILN_SOURCE_DIR;
  kiln::TrainSpec spec = kiln::load_train_spec(root + "/" + c.spec);
  kiln::driver::CompiledModel m =
      kiln::driver::compile_model(kiln::load_graph(root + "/" + c.graph), &spec, c.batch, threads);
  kiln::driver::initialize(m, spec);
  const kiln::lower::Entry* e = m.compiled->loops().entry("train_step");
  auto buffers = kiln::codegen::random_entry_buffers(*e, c.batch, 1, m.features_input, spec.optimizer.lr);
  int steps = c.big ? 1 : repeats;
  auto p = kiln::codegen::profile_entry(*m.compiled, *m.program, "train_step", c.batch, buffers.inputs, buffers.outputs,
                                         steps, 1);
  double flops = 0;
  for (auto& k : p.kernels) flops += k.flops * static_cast<double>(k.calls) / static_cast<double>(p.steps);
  double gf = flops / (p.step_ms * 1e-3) * 1e-9, blas = blas_gflops(c.fwd_m, c.fwd_k, c.fwd_n, threads, c.big ? 1 : repeats);
  std::printf("%-14s %6lld %3d %10.2f %10.2f %10.1f %10.1f %7.2f\n", c.name.c_str(), static_cast<long long>(c.batch),
              threads, p.step_ms, flops * 1e-9, gf, blas, gf / blas);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int repeats = 5;
  bool big = false, steps = true;
  std::string only;
  std::vector<int> threads = {1, 2};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--repeats" && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
    else if (a == "--big") big = true;
    else if (a == "--no-steps") steps = false;
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else if (a == "--threads" && i + 1 < argc) {
      threads.clear();
      std::string s = argv[++i];
      for (size_t p = 0; p < s.size();) {
        size_t q = s.find(',', p);
        threads.push_back(std::atoi(s.substr(p, q - p).c_str()));
        p = q == std::string::npos ? s.size() : q + 1;
      }
    } else {
      std::fprintf(stderr, "usage: kiln_bench_gemm [--repeats N] [--threads 1,2] [--big] [--only NAME] [--no-steps]\n");
      return 1;
    }
  }
  // CNN (graphs/cnn_mnist.json) conv layers at batch 32 as their im2col GEMMs:
  // forward M = batch*OH*OW, K = KH*KW*C, N = F; filter gradient (A^T) M = KH*KW*C,
  // K = batch*OH*OW, N = F; input gradient (B^T) M = batch*OH*OW, K = F, N = KH*KW*C.
  std::vector<Shape3> shapes = {
      {"batch64", 64, 3072, 1024},
      {"wgrad_At", 3072, 64, 1024, true, false},
      {"square", 1024, 1024, 1024},
      {"dx_Bt", 64, 1024, 3072, false, true},
      {"conv1_fwd", 32 * 26 * 26, 9, 32},
      {"conv2_fwd", 32 * 11 * 11, 288, 64},
      {"conv3_fwd", 32 * 3 * 3, 576, 64},
      {"conv2_wgrad", 288, 32 * 11 * 11, 64, true, false},
      {"conv2_dx", 32 * 11 * 11, 64, 288, false, true},
      {"mlp50000", 50000, 3072, 1024, false, false, true},
  };
  std::printf("OpenBLAS core: %s\n", openblas_get_corename());
  std::printf("%-12s %-18s %3s %10s %10s %10s %10s %7s %9s\n", "shape", "MxKxN", "thr", "kiln ms", "kiln GF/s",
              "blas ms", "blas GF/s", "ratio", "max|diff|");
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (const Shape3& s : shapes) {
    if (s.big && !big) continue;
    if (!only.empty() && s.name != only) continue;
    // A is stored [K, M] when transposed, B is stored [N, K].
    int64_t a_rows = s.ta ? s.k : s.m, a_cols = s.ta ? s.m : s.k;
    int64_t b_rows = s.tb ? s.n : s.k, b_cols = s.tb ? s.k : s.n;
    std::vector<float> a(static_cast<size_t>(a_rows * a_cols)), b(static_cast<size_t>(b_rows * b_cols));
    for (auto& x : a) x = dist(rng);
    for (auto& x : b) x = dist(rng);
    std::vector<float> c_kiln(static_cast<size_t>(s.m * s.n)), c_blas(c_kiln.size());

    kiln::Graph g;
    g.name = "bench_" + s.name;
    kiln::GraphBuilder gb(g);
    kiln::NodeId an = gb.input("a", {kiln::DType::f32, {a_rows, a_cols}});
    kiln::NodeId bn = gb.input("b", {kiln::DType::f32, {b_rows, b_cols}});
    kiln::NodeId mm = gb.add("matmul", {an, bn}, {{"transpose_a", s.ta}, {"transpose_b", s.tb}});
    g.outputs.push_back({"c", mm});
    double t0 = now_s();
    auto cp = kiln::codegen::compile_entries(g.name, {{"eval_step", &g, {"c"}, {}}}, {.max_batch = 1});
    double compile_ms = (now_s() - t0) * 1e3;
    double flops = 2.0 * static_cast<double>(s.m) * static_cast<double>(s.k) * static_cast<double>(s.n);
    int reps = s.big ? 1 : repeats;
    for (int t : threads) {
      kiln::ThreadPool pool(t);
      kiln::Program prog(cp->info(), &pool);
      double tk = median_seconds(reps, [&] { prog.run("eval_step", 1, {a.data(), b.data()}, {c_kiln.data()}); });
      openblas_set_num_threads(t);
      double tb = median_seconds(reps, [&] {
        cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                    static_cast<int>(s.m), static_cast<int>(s.n), static_cast<int>(s.k), 1.0f, a.data(),
                    static_cast<int>(a_cols), b.data(), static_cast<int>(b_cols), 0.0f, c_blas.data(),
                    static_cast<int>(s.n));
      });
      double diff = 0;
      for (size_t i = 0; i < c_kiln.size(); ++i) diff = std::max(diff, static_cast<double>(std::fabs(c_kiln[i] - c_blas[i])));
      char dims[64];
      std::snprintf(dims, sizeof dims, "%lldx%lldx%lld%s%s", static_cast<long long>(s.m), static_cast<long long>(s.k),
                    static_cast<long long>(s.n), s.ta ? " A^T" : "", s.tb ? " B^T" : "");
      std::printf("%-12s %-18s %3d %10.3f %10.1f %10.3f %10.1f %7.2f %9.2g\n", s.name.c_str(), dims, t, tk * 1e3,
                  flops / tk * 1e-9, tb * 1e3, flops / tb * 1e-9, tb / tk, diff);
      std::fflush(stdout);
    }
    std::printf("%-12s (compile %.0f ms)\n", "", compile_ms);
  }
  if (!steps) return 0;
  // Whole training steps: forward, backward and update, as `kiln train` runs them.
  const std::vector<StepCase> cases = {
      {"mlp_b64", "graphs/mlp_cifar10.json", "graphs/experiments/e2_mlp_autodiff_b64.json", 64, 64, 3072, 1024},
      {"mlp_full", "graphs/mlp_cifar10.json", "graphs/experiments/e2_mlp_autodiff_full.json", 50000, 50000, 3072, 1024,
       true},
      {"cnn_b32", "graphs/cnn_mnist.json", "graphs/experiments/e4a_cnn.json", 32, 32 * 11 * 11, 288, 64},
  };
  std::printf("\n%-14s %6s %3s %10s %10s %10s %10s %7s\n", "train step", "batch", "thr", "step ms", "GFLOP", "GF/s",
              "blas GF/s", "ratio");
  std::printf("(blas GF/s: OpenBLAS sgemm at the step's forward shape, same threads; ratio = step GF/s / blas GF/s)\n");
  for (const StepCase& c : cases) {
    if (c.big && !big) continue;
    if (!only.empty() && c.name != only) continue;
    for (int t : threads) time_step(c, t, repeats);
  }
  return 0;
}
