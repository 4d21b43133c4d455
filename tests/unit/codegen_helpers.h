#pragma once
// Shared by the codegen_*_test.cpp files: build a graph of many ops over
// random inputs, compile it once (JIT), run it at a batch size below the
// compiled maximum, and compare every output with the reference interpreter.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "compiler/codegen/jit.h"
#include "compiler/interp/interpreter.h"
#include "compiler/ir/builder.h"
#include "runtime/program.h"
#include "runtime/thread_pool.h"

namespace kiln::codegen_test {

using interp::Value;

struct JitCase {
  Graph g;
  GraphBuilder b{g};
  std::map<std::string, Value> feeds;
  int64_t batch, max_batch;
  std::mt19937_64 rng{12345};

  JitCase(int64_t run_batch, int64_t compiled_max) : batch(run_batch), max_batch(compiled_max) { g.name = "test"; }

  Value random(DType dt, Shape shape, double lo = -1, double hi = 1) {
    for (auto& d : shape)
      if (d == kOpenDim) d = batch;
    Value v{dt, shape, std::vector<double>(static_cast<size_t>(numel(shape)))};
    std::uniform_real_distribution<double> real(lo, hi);
    for (auto& x : v.data) {
      double r = real(rng);
      x = is_float(dt) ? static_cast<double>(static_cast<float>(r)) : std::floor(r);
      if (dt == DType::boolean) x = r > (lo + hi) / 2;
    }
    return v;
  }
  // An input of declared shape (may hold -1) with random values in [lo, hi)
  // (integers: floor of them).
  NodeId input(const std::string& name, Shape shape, double lo = -1, double hi = 1, DType dt = DType::f32) {
    feeds[name] = random(dt, shape, lo, hi);
    return b.input(name, {dt, shape});
  }
  NodeId param(const std::string& name, Shape shape, double lo = -1, double hi = 1) {
    feeds[name] = random(DType::f32, shape, lo, hi);
    return b.param(name, {DType::f32, shape});
  }
  NodeId op(const std::string& name, std::vector<NodeId> in, Attrs attrs = Attrs::object()) {
    return b.add(name, std::move(in), std::move(attrs));
  }
  void out(const std::string& name, NodeId id) { g.outputs.push_back({name, id}); }

  // Compiles one entry with every output, runs it, and checks each output
  // against the interpreter (f32): max |jit - interp| <= tol * max |interp|
  // (exact for integer and bool outputs). Returns the JIT's outputs.
  std::map<std::string, Value> check(double tol = 1e-5, int vector_bits = 0) {
    std::vector<std::string> names;
    for (auto& [n, id] : g.outputs) names.push_back(n);
    auto cp = codegen::compile_entries(g.name, {{"eval_step", &g, names, {}}}, {.max_batch = max_batch},
                                       {.vector_bits = vector_bits});
    Program prog(cp->info());
    auto got = codegen::run_entry(prog, "eval_step", batch, feeds);
    auto want = interp::Interpreter(g, interp::Precision::f32).run(feeds, names);
    for (auto& name : names) {
      const Value &x = got.at(name), &r = want.at(name);
      INFO("output " << name);
      REQUIRE(x.shape == r.shape);
      REQUIRE(x.data.size() == r.data.size());
      double max_ref = 0, max_diff = 0;
      size_t worst = 0;
      for (size_t i = 0; i < r.data.size(); ++i) {
        max_ref = std::max(max_ref, std::fabs(r.data[i]));
        double d = std::fabs(x.data[i] - r.data[i]);
        if (!(d <= max_diff)) max_diff = d, worst = i;
      }
      INFO("max |jit - interp| = " << max_diff << " at " << worst << " (jit " << x.data[worst] << ", interp "
                                   << r.data[worst] << "), max |interp| = " << max_ref);
      if (is_float(r.dtype)) CHECK(max_diff <= tol * max_ref);
      else CHECK(max_diff == 0);
    }
    return got;
  }
};

// The outputs of `entry` run once on a pool of each thread count (for checks
// that results do not depend on it).
inline std::vector<std::map<std::string, Value>> run_on_threads(const codegen::CompiledProgram& cp,
                                                                const std::string& entry, int64_t batch,
                                                                const std::map<std::string, Value>& feeds,
                                                                std::initializer_list<int> threads = {1, 2, 3}) {
  std::vector<std::map<std::string, Value>> runs;
  for (int n : threads) {
    ThreadPool pool(n);
    Program prog(cp.info(), &pool);
    runs.push_back(codegen::run_entry(prog, entry, batch, feeds));
  }
  return runs;
}

}  // namespace kiln::codegen_test
