// Memory and threads of compiled steps (issue #7): the planned arena is
// smaller than the intermediates side by side, optimizer updates write in
// place, train_step/eval_step/predict allocate nothing, and training gives
// bit-identical params on 1, 2 and 3 threads (also with a poisoned arena, which
// catches a kernel reading bytes another buffer left behind).
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <malloc.h>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include "compiler/autodiff/train_step.h"
#include "compiler/codegen/check_numerics.h"
#include "compiler/codegen/jit.h"
#include "compiler/codegen/programs.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/frontend/train_spec.h"
#include "compiler/interp/interpreter.h"
#include "compiler/lower/memory_plan.h"
#include "runtime/thread_pool.h"
#if defined(__linux__)
#include "tests/unit/two_cores.h"
#endif

// ---- a counting allocator hook ----
// Counts the malloc family's calls while `g_count_allocations` is set, on every
// thread (operator new comes through malloc too).
namespace {
std::atomic<bool> g_count_allocations{false};
std::atomic<int64_t> g_allocations{0};
inline void count_allocation() {
  if (g_count_allocations.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KILN_TEST_UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define KILN_TEST_UNDER_ASAN 1
#endif

#ifdef KILN_TEST_UNDER_ASAN
// ASan owns the malloc family (a binary that defines its own crashes in ASan's
// start-up); it reports every allocation to a hook instead. (Declared here:
// g++ does not ship <sanitizer/allocator_interface.h>.)
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*)(const volatile void*, size_t),
                                                         void (*)(const volatile void*));
namespace {
void on_malloc(const volatile void*, size_t) { count_allocation(); }
void on_free(const volatile void*) {}
const int g_hooks_installed = __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}  // namespace
#else
// The test binary's malloc family forwards to glibc's.
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void* malloc(size_t n) {
  count_allocation();
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
  count_allocation();
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
  count_allocation();
  return __libc_realloc(p, n);
}
void* aligned_alloc(size_t align, size_t n) {
  count_allocation();
  return __libc_memalign(align, n);
}
void* memalign(size_t align, size_t n) {
  count_allocation();
  return __libc_memalign(align, n);
}
}
#endif

using namespace kiln;
using interp::Value;

namespace {

std::string source(const std::string& rel) { return std::string(KILN_SOURCE_DIR) + "/" + rel; }

struct Model {
  std::unique_ptr<const codegen::ProgramGraphs> graphs;
};

Model model(const std::string& graph, const std::string& spec) {
  Graph g = load_graph(source(graph));
  TrainSpec s = expand_sweeps(load_train_spec(source(spec))).front();
  apply_train_spec(g, s);
  TrainStepConfig config = train_step_config(s);
  return {codegen::program_graphs(std::move(g), &config)};
}

std::vector<lower::EntrySpec> only(const codegen::ProgramGraphs& graphs, const std::string& name) {
  std::vector<lower::EntrySpec> out;
  for (auto& e : graphs.entries())
    if (name.empty() || e.name == name) out.push_back(e);
  return out;
}

// Fills params and optimizer state through the init entry (same values every call).
void init(Program& prog, const codegen::ProgramGraphs& graphs) {
  auto values = interp::init_params(graphs.model);
  auto state = initial_optimizer_state(*graphs.train_step, values);
  values.insert(state.begin(), state.end());
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<const void*> ptrs;
  for (const TensorInfo& t : prog.entry("init")->inputs) {
    bytes.push_back(codegen::to_bytes(values.at(t.name), static_cast<DType>(t.type)));
    ptrs.push_back(bytes.back().data());
  }
  prog.run("init", 1, ptrs, {});
}

// An entry's inputs as bytes, built once; `pointers` and `outputs` are what run() takes.
struct Feeds {
  std::vector<std::vector<uint8_t>> in, out;
  std::vector<const void*> pointers;
  std::vector<void*> outputs;
  Feeds(const lower::Entry& e, int64_t batch, uint64_t seed, double lr) {
    auto values = codegen::random_feeds(e, batch, seed);
    if (values.count("x"))
      for (auto& v : values.at("x").data) v = (v + 1) / 2;
    if (values.count(kLearningRateInput)) values.at(kLearningRateInput).data = {lr};
    for (auto& t : e.inputs) {
      in.push_back(codegen::to_bytes(values.at(t.name), t.dtype));
      pointers.push_back(in.back().data());
    }
    for (auto& t : e.outputs) {
      out.emplace_back(static_cast<size_t>(numel(t.shape, batch) * static_cast<int64_t>(dtype_size(t.dtype))) + 8);
      outputs.push_back(out.back().data());
    }
  }
};

// 5 train steps on 1, 2 and 3 threads (the others with the arena filled
// with NaN bytes before each step): every param and state byte agrees.
void check_thread_count_invariance(const std::string& graph, const std::string& spec, int64_t batch, double lr) {
  Model m = model(graph, spec);
  auto cp = codegen::compile_entries(m.graphs->model.name, only(*m.graphs, "train_step"), {.max_batch = batch});
  const lower::Entry& entry = *cp->loops().entry("train_step");
  ThreadPool one(1), two(2), three(3);
  Program a(cp->info(), &one), b(cp->info(), &two), c(cp->info(), &three);
  for (Program* p : {&a, &b, &c}) init(*p, *m.graphs);
  const std::string step = "train_step";
  for (int s = 0; s < 5; ++s) {
    Feeds f(entry, batch, 200 + static_cast<uint64_t>(s), lr);
    a.run(step, batch, f.pointers, f.outputs);
    for (Program* p : {&b, &c}) {
      std::memset(p->arena(), 0xff, static_cast<size_t>(cp->info().arena_bytes));
      p->run(step, batch, f.pointers, f.outputs);
    }
  }
  for (Program* p : {&b, &c})
    for (const TensorInfo& t : a.info().persistent) {
      INFO("param or state " << t.name << ", " << (p == &b ? 2 : 3) << " threads");
      CHECK(std::memcmp(a.persistent(t.name), p->persistent(t.name), static_cast<size_t>(t.bytes(1))) == 0);
    }
}

}  // namespace

TEST_CASE("codegen: the planned arena is smaller than every intermediate side by side (MLP and CNN steps)") {
  for (auto [graph, spec, batch] : {std::tuple{"graphs/mlp_cifar10.json", "graphs/experiments/e2_mlp_autodiff_b64.json", 64},
                                    std::tuple{"graphs/cnn_mnist.json", "graphs/experiments/e4a_cnn.json", 32}}) {
    INFO(graph);
    Model m = model(graph, spec);
    for (bool fuse : {true, false}) {
      INFO("fusion " << (fuse ? "on" : "off"));
      lower::Program p =
          lower::lower_program(m.graphs->model.name, m.graphs->entries(), {.max_batch = batch, .fuse = fuse});
      CHECK(p.arena_bytes < p.intermediate_bytes);
      const lower::Entry* train = p.entry("train_step");
      REQUIRE(train != nullptr);
      CHECK(train->arena_bytes <= p.arena_bytes);
      // Every optimizer update writes its param or state in place: no end-of-step copies. Fused,
      // the update kernel stores into the param itself; unfused, the memory plan redirects it.
      for (int k : train->kernels) CHECK(p.kernels[static_cast<size_t>(k)].node.rfind("update_", 0) != 0);
      for (auto& u : train->updates) {
        INFO("update of " << p.buffers[static_cast<size_t>(u.param)].name);
        CHECK(u.kernel == -1);
      }
      if (!fuse) CHECK(!train->updates.empty());
    }
  }
}

TEST_CASE("codegen: train_step, eval_step and predict allocate nothing (10 steps, 2 threads)") {
  Model m = model("graphs/mlp_cifar10.json", "graphs/experiments/e2_mlp_autodiff_b64.json");
  const int64_t batch = 32;
  auto cp = codegen::compile_entries(m.graphs->model.name, only(*m.graphs, ""), {.max_batch = batch});
  ThreadPool pool(2);
  Program prog(cp->info(), &pool);
  init(prog, *m.graphs);
  const std::string names[] = {"train_step", "eval_step", "predict"};
  std::vector<Feeds> feeds;
  for (const std::string& n : names) feeds.emplace_back(*cp->loops().entry(n), batch, 7, 0.001);
  for (size_t i = 0; i < 3; ++i) prog.run(names[i], batch, feeds[i].pointers, feeds[i].outputs);  // warm up
  g_allocations = 0;
  g_count_allocations = true;
  for (int s = 0; s < 10; ++s) prog.run(names[0], batch, feeds[0].pointers, feeds[0].outputs);
  prog.run(names[1], batch, feeds[1].pointers, feeds[1].outputs);
  prog.run(names[2], batch, feeds[2].pointers, feeds[2].outputs);
  g_count_allocations = false;
  CHECK(g_allocations.load() == 0);
  // The hook itself works.
  g_count_allocations = true;
  void* volatile p = std::malloc(16);
  g_count_allocations = false;
  std::free(p);
  CHECK(g_allocations.load() == 1);
}

#if defined(__linux__)
TEST_CASE("codegen: the thread pool steers a caller off its worker's core without allocating") {
  // Steering happens inside a step the first time the caller is found on a
  // worker's core: it must allocate nothing either. Put this thread on the
  // worker's core, so the counted parallel_for (almost always) has to steer it.
  test::TwoCores cores;
  if (!cores.skip_reason.empty()) {
    MESSAGE("skipped: " << cores.skip_reason);
    return;
  }
  const int cpus[2] = {cores.cpu[0], cores.cpu[1]};
  {
    ThreadPool pool(2);  // its worker: the second core
    cpu_set_t worker_core;
    CPU_ZERO(&worker_core);
    CPU_SET(cpus[1], &worker_core);
    // Onto the worker's core, then free again: the thread stays there (nothing
    // moves a running thread at once) until the pool steers it away.
    REQUIRE(sched_setaffinity(0, sizeof worker_core, &worker_core) == 0);
    REQUIRE(sched_getcpu() == cpus[1]);
    REQUIRE(sched_setaffinity(0, sizeof cores.two, &cores.two) == 0);
    std::atomic<int> caller_cpu{-1};
    auto body = [](void* closure, int64_t b, int64_t) {
      if (b == 0) static_cast<std::atomic<int>*>(closure)->store(sched_getcpu());
    };
    g_allocations = 0;
    g_count_allocations = true;
    pool.parallel_for(2, body, &caller_cpu);
    g_count_allocations = false;
    CHECK(g_allocations.load() == 0);
    CHECK(caller_cpu.load() != cpus[1]);  // it was moved off the worker's core
  }
}
#endif

TEST_CASE("codegen: 5 MLP training steps give bit-identical params on 1, 2 and 3 threads") {
  check_thread_count_invariance("graphs/mlp_cifar10.json", "graphs/experiments/e2_mlp_autodiff_b64.json", 32, 0.01);
}

TEST_CASE("codegen: 5 CNN training steps (Adam) give bit-identical params and state on 1, 2 and 3 threads") {
  check_thread_count_invariance("graphs/cnn_mnist.json", "graphs/experiments/e4a_cnn.json", 8, 0.001);
}
