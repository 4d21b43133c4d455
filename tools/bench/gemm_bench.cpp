// kiln's generated GEMM next to OpenBLAS sgemm, in one run (a benchmark, not a test).
//
// For each shape M x K x N (and transpose form) it builds a one-matmul graph,
// compiles it with kiln's pipeline (lowering, LLVM codegen, ORC JIT), and
// times the program's entry and cblas_sgemm on the same operands: one warm-up,
// then the median of --repeats runs, at each thread count. It also checks the
// two results agree.
//
// After the named shapes, --random N (default 20) further shapes drawn with a
// fixed seed (M, N, K log-uniform in [8, 4096], the transpose forms in turn)
// and a summary line: the geometric mean and minimum of their ratios. Then
// the host's ISA and, per shape, the register tile and blocking kiln chose.
//
// Then batched matmuls at attention's shapes (one kernel for 128 products)
// beside one OpenBLAS sgemm of the same total work.
//
// Then it times whole compiled training steps (graphs/mlp_cifar10.json at
// batch 64, and with --big at the full batch of 50,000; graphs/cnn_mnist.json
// at batch 32) and prints their achieved GFLOP/s (FLOPs of every kernel,
// see `kiln profile`) beside OpenBLAS's GFLOP/s at the step's forward GEMM
// shape, measured in the same run.
//
//   kiln_bench_gemm [--repeats 5] [--threads 1,2] [--big] [--only PREFIX] [--no-steps]
//                   [--random N] [--vector-bits 256|512] [--cold]
// (--cold: caches flushed before each timed run, as a training step's operands arrive)
// (ratio = OpenBLAS time / kiln time: above 1, kiln is faster; --vector-bits
// compiles kiln's kernels for that width, e.g. the AVX2 kernels on an AVX-512 host.)
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "compiler/codegen/host.h"
#include "compiler/codegen/jit.h"
#include "compiler/lower/gemm_blocking.h"
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

// Idle for 0.2 s: OpenBLAS's worker threads spin for about 2^28 cycles after
// a call before they sleep, and would take a core from the next kiln run.
void settle() { std::this_thread::sleep_for(std::chrono::milliseconds(200)); }

// --cold: the operands come from memory, as in a training step whose
// buffers (hundreds of MB) pass through the caches between two uses of each:
// a 64 MB buffer is read before every timed run (not timed; read, not
// written: no dirty lines left for the run to write back).
bool g_cold = false;
volatile float g_sweep_sum = 0;
void evict_caches() {
  static std::vector<float> sweep(size_t{16} << 20, 1.0f);
  float sum = 0;
  for (size_t i = 0; i < sweep.size(); i += 16) sum += sweep[i];
  g_sweep_sum = sum;
}

template <class F>
double median_seconds(int repeats, F&& f) {
  f();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    if (g_cold) evict_caches();
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
void time_step(const StepCase& c, int threads, int repeats, int vector_bits) {
  std::string root = KILN_SOURCE_DIR;
  kiln::TrainSpec spec = kiln::load_train_spec(root + "/" + c.spec);
  double flops = 0, step_ms = 0;
  {
    kiln::driver::CompiledModel m = kiln::driver::compile_model(kiln::load_graph(root + "/" + c.graph), &spec, c.batch,
                                                                threads, {.vector_bits = vector_bits});
    kiln::driver::initialize(m, spec);
    const kiln::lower::Entry* e = m.compiled->loops().entry("train_step");
    auto buffers = kiln::codegen::random_entry_buffers(*e, c.batch, 1, m.features_input, spec.optimizer.lr);
    int steps = c.big ? 1 : repeats;
    settle();
    auto p = kiln::codegen::profile_entry(*m.compiled, *m.program, "train_step", c.batch, buffers.inputs,
                                           buffers.outputs, steps, 1);
    for (auto& k : p.kernels) flops += k.flops * static_cast<double>(k.calls) / static_cast<double>(p.steps);
    step_ms = p.step_ms;
  }  // (the model's pool is gone before OpenBLAS runs)
  double gf = flops / (step_ms * 1e-3) * 1e-9, blas = blas_gflops(c.fwd_m, c.fwd_k, c.fwd_n, threads, c.big ? 1 : repeats);
  std::printf("%-14s %6lld %3d %10.2f %10.2f %10.1f %10.1f %7.2f\n", c.name.c_str(), static_cast<long long>(c.batch),
              threads, step_ms, flops * 1e-9, gf, blas, gf / blas);
  std::fflush(stdout);
}

// A random shape: M, N, K log-uniform in [8, 4096] (at most 2^34 multiply-adds: seconds, not minutes).
Shape3 random_shape(std::mt19937& rng, int index) {
  std::uniform_real_distribution<double> log_dim(std::log(8.0), std::log(4096.0));
  for (;;) {
    auto dim = [&] { return static_cast<int64_t>(std::lround(std::exp(log_dim(rng)))); };
    Shape3 s{"rand" + std::to_string(index), dim(), dim(), dim(), (index & 1) != 0, (index & 2) != 0};
    if (static_cast<double>(s.m) * static_cast<double>(s.k) * static_cast<double>(s.n) <= 0x1p34) return s;
  }
}

std::string dims_text(const Shape3& s) {
  char dims[64];
  std::snprintf(dims, sizeof dims, "%lldx%lldx%lld%s%s", static_cast<long long>(s.m), static_cast<long long>(s.k),
                static_cast<long long>(s.n), s.ta ? " A^T" : "", s.tb ? " B^T" : "");
  return dims;
}

// Times one shape at each thread count and prints a table line each;
// returns the ratios (OpenBLAS time / kiln time) by thread count.
std::vector<double> bench_shape(const Shape3& s, const std::vector<int>& threads, int repeats, int vector_bits,
                                std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1, 1);
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
  auto cp = kiln::codegen::compile_entries(g.name, {{"eval_step", &g, {"c"}, {}}}, {.max_batch = 1},
                                           {.vector_bits = vector_bits});
  double compile_ms = (now_s() - t0) * 1e3;
  double flops = 2.0 * static_cast<double>(s.m) * static_cast<double>(s.k) * static_cast<double>(s.n);
  int reps = s.big ? 1 : repeats;
  std::vector<double> ratios;
  for (int t : threads) {
    double tk;
    {
      settle();  // OpenBLAS's threads spin a while after each call: let them sleep first
      kiln::ThreadPool pool(t);
      kiln::Program prog(cp->info(), &pool);
      tk = median_seconds(reps, [&] { prog.run("eval_step", 1, {a.data(), b.data()}, {c_kiln.data()}); });
    }  // (kiln's pool is gone: its workers do not spin beside OpenBLAS)
    openblas_set_num_threads(t);
    double tb = median_seconds(reps, [&] {
      cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                  static_cast<int>(s.m), static_cast<int>(s.n), static_cast<int>(s.k), 1.0f, a.data(),
                  static_cast<int>(a_cols), b.data(), static_cast<int>(b_cols), 0.0f, c_blas.data(),
                  static_cast<int>(s.n));
    });
    double diff = 0;
    for (size_t i = 0; i < c_kiln.size(); ++i) diff = std::max(diff, static_cast<double>(std::fabs(c_kiln[i] - c_blas[i])));
    std::printf("%-12s %-18s %3d %10.3f %10.1f %10.3f %10.1f %7.2f %9.2g\n", s.name.c_str(), dims_text(s).c_str(), t,
                tk * 1e3, flops / tk * 1e-9, tb * 1e3, flops / tb * 1e-9, tb / tk, diff);
    std::fflush(stdout);
    ratios.push_back(tb / tk);
  }
  std::printf("%-12s (compile %.0f ms)\n", "", compile_ms);
  return ratios;
}

// A batched matmul (attention's products) against one OpenBLAS sgemm doing
// the same total work as a single product: [P, M, K] x [P, K, N] (or its
// [P, N, K]^T form) vs (P*M) x K x N. ratio = kiln GF/s / sgemm GF/s.
struct BatchedCase {
  std::string name;
  int64_t products, m, k, n;
  bool tb = false;
};

void bench_batched(const BatchedCase& s, const std::vector<int>& threads, int repeats, int vector_bits,
                   std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<float> a(static_cast<size_t>(s.products * s.m * s.k)), b(static_cast<size_t>(s.products * s.k * s.n));
  for (auto& x : a) x = dist(rng);
  for (auto& x : b) x = dist(rng);
  std::vector<float> c(static_cast<size_t>(s.products * s.m * s.n));
  kiln::Graph g;
  g.name = "bench_" + s.name;
  kiln::GraphBuilder gb(g);
  kiln::NodeId an = gb.input("a", {kiln::DType::f32, {s.products, s.m, s.k}});
  kiln::NodeId bn = gb.input("b", {kiln::DType::f32, {s.products, s.tb ? s.n : s.k, s.tb ? s.k : s.n}});
  g.outputs.push_back({"c", gb.add("matmul", {an, bn}, {{"transpose_b", s.tb}})});
  auto cp = kiln::codegen::compile_entries(g.name, {{"eval_step", &g, {"c"}, {}}}, {.max_batch = 1},
                                           {.vector_bits = vector_bits});
  const double flops = 2.0 * static_cast<double>(s.products * s.m) * static_cast<double>(s.k) * static_cast<double>(s.n);
  for (int t : threads) {
    double tk;
    {
      settle();
      kiln::ThreadPool pool(t);
      kiln::Program prog(cp->info(), &pool);
      tk = median_seconds(repeats, [&] { prog.run("eval_step", 1, {a.data(), b.data()}, {c.data()}); });
    }
    double blas = blas_gflops(s.products * s.m, s.k, s.n, t, repeats);
    char dims[96];
    std::snprintf(dims, sizeof dims, "[%lld,%lld,%lld]x[%lld,%lld,%lld]%s", static_cast<long long>(s.products),
                  static_cast<long long>(s.m), static_cast<long long>(s.k), static_cast<long long>(s.products),
                  static_cast<long long>(s.tb ? s.n : s.k), static_cast<long long>(s.tb ? s.k : s.n), s.tb ? "^T" : "");
    std::printf("%-14s %-28s %3d %10.3f %10.1f %10.1f %7.2f\n", s.name.c_str(), dims, t, tk * 1e3, flops / tk * 1e-9,
                blas, flops / tk * 1e-9 / blas);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int repeats = 5, random_shapes = 20, vector_bits = 0;
  bool big = false, steps = true;
  std::string only;
  std::vector<int> threads = {1, 2};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--repeats" && i + 1 < argc) repeats = std::max(1, std::atoi(argv[++i]));
    else if (a == "--big") big = true;
    else if (a == "--no-steps") steps = false;
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else if (a == "--cold") g_cold = true;
    else if (a == "--random" && i + 1 < argc) random_shapes = std::max(0, std::atoi(argv[++i]));
    else if (a == "--vector-bits" && i + 1 < argc) vector_bits = std::atoi(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) {
      threads.clear();
      std::string s = argv[++i];
      for (size_t p = 0; p < s.size();) {
        size_t q = s.find(',', p);
        threads.push_back(std::atoi(s.substr(p, q - p).c_str()));
        p = q == std::string::npos ? s.size() : q + 1;
      }
    } else {
      std::fprintf(stderr,
                   "usage: kiln_bench_gemm [--repeats N] [--threads 1,2] [--big] [--only PREFIX] [--no-steps] "
                   "[--random N] [--vector-bits 256|512] [--cold]\n");
      return 1;
    }
  }
  const kiln::codegen::HostTarget& host = kiln::codegen::host_target();
  if (vector_bits == 0) vector_bits = host.vector_bits;
  if (vector_bits != 128 && vector_bits != 256 && vector_bits != 512) {
    std::fprintf(stderr, "kiln_bench_gemm: --vector-bits must be 128, 256 or 512\n");
    return 1;
  }
  if (vector_bits > host.vector_bits) {
    std::fprintf(stderr, "kiln_bench_gemm: this host (%s) runs at most %d-bit vectors, not %d\n", host.cpu.c_str(),
                 host.vector_bits, vector_bits);
    return 1;
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
      // char_gpt's MLP (graphs/zoo/char_gpt.json, batch 32 x 128 tokens, d 128, 4x): up, down, and down's
      // weight gradient (h^T dy, K = every token) and input gradient (dy W^T).
      {"gpt_up", 4096, 128, 512},
      {"gpt_down", 4096, 512, 128},
      {"gpt_down_wgrad", 512, 4096, 128, true, false},
      {"gpt_down_dx", 4096, 128, 512, false, true},
      // MobileNetV2's early 1x1 convolutions at batch 32 (channels-last im2col GEMMs): the expansion
      // 16 -> 96 at 112x112 and the projections 96 -> 24 and 144 -> 24 at 56x56 (few columns, deep M).
      {"mbv2_expand", 32 * 112 * 112, 16, 96},
      {"mbv2_project96", 32 * 56 * 56, 96, 24},
      {"mbv2_project144", 32 * 56 * 56, 144, 24},
      {"mbv2_expand24", 32 * 56 * 56, 24, 144},
      {"mbv2_x32", 100352, 96, 32},{"mbv2_x16", 100352, 96, 16},{"mbv2_x48", 100352, 96, 48},{"mbv2_x96", 100352, 96, 96},{"mbv2_y24", 100352, 256, 24},
  };
  const size_t named = shapes.size();
  std::mt19937 shape_rng(20261202);  // the random shapes: the same on every run and host
  for (int i = 0; i < random_shapes; ++i) shapes.push_back(random_shape(shape_rng, i));

  std::printf("OpenBLAS core: %s\n", openblas_get_corename());
  std::printf("%-12s %-18s %3s %10s %10s %10s %10s %7s %9s\n", "shape", "MxKxN", "thr", "kiln ms", "kiln GF/s",
              "blas ms", "blas GF/s", "ratio", "max|diff|");
  std::mt19937 rng(42);
  std::vector<const Shape3*> run;
  std::vector<std::vector<double>> random_ratios(threads.size());
  std::vector<std::string> worst(threads.size());
  std::vector<double> worst_ratio(threads.size(), 1e30);
  for (size_t i = 0; i < shapes.size(); ++i) {
    const Shape3& s = shapes[i];
    if (s.big && !big) continue;
    if (!only.empty() && s.name.rfind(only, 0) != 0 && !(only == "random" && i >= named)) continue;  // (a prefix: --only gpt)
    std::vector<double> ratios = bench_shape(s, threads, repeats, vector_bits, rng);
    run.push_back(&s);
    if (i < named) continue;
    for (size_t t = 0; t < threads.size(); ++t) {
      random_ratios[t].push_back(ratios[t]);
      if (ratios[t] < worst_ratio[t]) worst_ratio[t] = ratios[t], worst[t] = s.name;
    }
  }
  for (size_t t = 0; t < threads.size(); ++t) {
    if (random_ratios[t].empty()) continue;
    double log_sum = 0;
    for (double r : random_ratios[t]) log_sum += std::log(r);
    std::printf("random shapes (%zu, seed 20261202), %d thread%s: ratio geometric mean %.2f, minimum %.2f (%s)\n",
                random_ratios[t].size(), threads[t], threads[t] > 1 ? "s" : "",
                std::exp(log_sum / static_cast<double>(random_ratios[t].size())), worst_ratio[t], worst[t].c_str());
  }
  const std::vector<BatchedCase> batched = {
      {"attn_scores", 128, 128, 32, 128, true},   // q k^T: 128 heads x batch of 128 tokens, d = 32
      {"attn_context", 128, 128, 128, 32},        // softmax(scores) v
  };
  bool header = false;
  for (const BatchedCase& b : batched) {
    if (!only.empty() && b.name.rfind(only, 0) != 0) continue;
    if (!header)
      std::printf("\n%-14s %-28s %3s %10s %10s %10s %7s\n(blas GF/s: one sgemm of the same total work, (P*M)xKxN)\n",
                  "batched", "shape", "thr", "kiln ms", "kiln GF/s", "blas GF/s", "ratio");
    header = true;
    bench_batched(b, threads, repeats, vector_bits, rng);
  }
  // What was measured: the ISA kiln compiled for, and each shape's plan.
  const int lanes = vector_bits / 32;
  std::printf("\nhost: %s, %d-bit vectors on the host (%s); kiln's kernels compiled for %d-bit vectors\n",
              host.cpu.c_str(), host.vector_bits,
              host.vector_bits == 512 ? "AVX-512" : host.vector_bits == 256 ? "AVX2" : "SSE/NEON", vector_bits);
  for (const Shape3* s : run)
    std::printf("plan %-12s %-18s %s\n", s->name.c_str(), dims_text(*s).c_str(),
                kiln::lower::plan_gemm(lanes, s->m, s->n, s->k).describe().c_str());
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
    if (!only.empty() && c.name.rfind(only, 0) != 0) continue;
    for (int t : threads) time_step(c, t, repeats, vector_bits);
  }
  return 0;
}
