#include "compiler/codegen/profile.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <stdexcept>

#include "compiler/autodiff/train_step.h"
#include "compiler/codegen/check_numerics.h"
#include "runtime/float_mode.h"
#include "runtime/thread_pool.h"

namespace kiln::codegen {

namespace {

using Clock = std::chrono::steady_clock;

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// An integer expression (trip counts, gemm sizes) at batch size `batch`;
// loop variables take the value bound in `vars` (their loop's start).
int64_t eval_int(const lower::ExprP& e, int64_t batch, const std::map<int, int64_t>& vars) {
  using lower::ExprKind;
  using lower::Op;
  if (!e) return 0;
  switch (e->kind) {
    case ExprKind::Const: return lower::is_float(e->type) ? static_cast<int64_t>(e->fval) : e->ival;
    case ExprKind::Batch: return batch;
    case ExprKind::Var: {
      auto it = vars.find(e->id);
      return it == vars.end() ? 0 : it->second;
    }
    case ExprKind::Cast: return eval_int(e->args[0], batch, vars);
    case ExprKind::Binary: {
      int64_t a = eval_int(e->args[0], batch, vars), b = eval_int(e->args[1], batch, vars);
      switch (e->op) {
        case Op::Add: return a + b;
        case Op::Sub: return a - b;
        case Op::Mul: return a * b;
        case Op::Div: return b ? a / b : 0;
        case Op::Mod: return b ? a % b : 0;
        case Op::Max: return std::max(a, b);
        case Op::Min: return std::min(a, b);
        case Op::Xor: return a ^ b;
        case Op::Shr: return static_cast<int64_t>(static_cast<uint64_t>(a) >> (b & 63));
        default: return 0;
      }
    }
    default: return 0;
  }
}

// Floating-point operations in a scalar expression (index math excluded).
int64_t expr_flops(const lower::ExprP& e) {
  using lower::ExprKind;
  if (!e || e->kind == ExprKind::Load) return 0;
  int64_t n = 0;
  if (e->kind == ExprKind::Unary || e->kind == ExprKind::Binary || e->kind == ExprKind::Select) {
    bool on_floats = lower::is_float(e->type) || (!e->args.empty() && lower::is_float(e->args[0]->type));
    if (on_floats) n = 1;
  }
  for (auto& a : e->args) n += expr_flops(a);
  return n;
}

double stmts_flops(const std::vector<lower::Stmt>& body, double trips, int64_t batch, std::map<int, int64_t>& vars) {
  double total = 0;
  for (const lower::Stmt& s : body) {
    if (s.kind == lower::StmtKind::Loop) {
      int64_t lo = eval_int(s.lo, batch, vars), hi = eval_int(s.hi, batch, vars);
      vars[s.var] = lo;
      total += stmts_flops(s.body, trips * static_cast<double>(std::max<int64_t>(hi - lo, 0)), batch, vars);
    } else {
      total += trips * static_cast<double>(expr_flops(s.value));
    }
  }
  return total;
}

}  // namespace

double kernel_flops(const lower::Kernel& k, int64_t batch) {
  std::map<int, int64_t> vars;
  if (k.kind == lower::KernelKind::Gemm && k.gemm.packs_b) return 0;  // moves op(B), multiplies nothing
  if (k.kind == lower::KernelKind::Gemm)
    return 2.0 * static_cast<double>(k.gemm.batched() ? eval_int(k.gemm.batch, batch, vars) : 1) *
               static_cast<double>(eval_int(k.gemm.m, batch, vars)) * static_cast<double>(eval_int(k.gemm.n, batch, vars)) *
               static_cast<double>(eval_int(k.gemm.k, batch, vars)) +
           stmts_flops(k.body, 1, batch, vars);  // its epilogue
  return stmts_flops(k.body, 1, batch, vars);
}

EntryProfile profile_entry(const CompiledProgram& cp, Program& prog, const std::string& entry, int64_t batch,
                           const std::vector<const void*>& inputs, const std::vector<void*>& outputs, int steps,
                           int warmup) {
  const lower::Program& p = cp.loops();
  const lower::Entry* e = p.entry(entry);
  if (!e) throw std::runtime_error("the program has no entry point '" + entry + "'");
  if (steps < 1) throw std::runtime_error("profile at least one step");
  if (inputs.size() != e->inputs.size())
    throw std::runtime_error(entry + " takes " + std::to_string(e->inputs.size()) + " inputs, got " +
                             std::to_string(inputs.size()));
  for (int s = 0; s < warmup; ++s) prog.run(entry, batch, inputs, outputs);

  EntryProfile out;
  out.entry = entry;
  out.batch = batch;
  out.steps = steps;
  auto* pool = static_cast<ThreadPool*>(prog.context().pool);
  out.threads = pool ? pool->threads() : 1;
  if (pool) pool->reset_stats();
  auto t0 = Clock::now();
  for (int s = 0; s < steps; ++s) prog.run(entry, batch, inputs, outputs);
  out.step_ms = ms(Clock::now() - t0) / steps;
  if (pool && pool->threads() > 1) {
    const ThreadPool::Stats st = pool->stats();
    out.parallel_calls = static_cast<double>(st.jobs) / steps;
    out.barrier_ms = static_cast<double>(st.barrier_ns) * 1e-6 / steps;
    const double worker_ms = out.step_ms * steps * (pool->threads() - 1);
    out.worker_idle = worker_ms > 0 ? std::max(0.0, 1.0 - static_cast<double>(st.worker_busy_ns) * 1e-6 / worker_ms) : 0;
  }

  // Kernels read step inputs by their group's slots (see lower::Entry::input_slot).
  std::vector<const void*> slots(static_cast<size_t>(e->slot_count), nullptr);
  for (size_t i = 0; i < e->input_slot.size(); ++i) slots[static_cast<size_t>(e->input_slot[i])] = inputs[i];
  std::vector<kiln_kernel_fn> fns;
  for (int k : e->kernels) {
    const lower::Kernel& kernel = p.kernels[static_cast<size_t>(k)];
    if (kernel.once_per_params && e->prepared_epoch >= 0) {  // not part of a step (codegen.cpp's entry skips them)
      ++out.once_per_params;
      continue;
    }
    fns.push_back(cp.kernel(kernel.name));
    out.kernels.push_back({kernel.name, kernel.node, kernel.origin, 0, 0, kernel_flops(kernel, batch)});
  }
  std::vector<Clock::duration> spent(fns.size(), Clock::duration::zero());
  kiln_context& ctx = prog.context();
  const FloatModeScope mode(prog.flush_denormals());  // as Program::run
  for (int s = 0; s < steps; ++s) {
    ctx.batch = batch;
    for (size_t i = 0; i < fns.size(); ++i) {
      const int64_t waited = pool ? pool->stats().barrier_ns : 0;
      auto start = Clock::now();
      fns[i](&ctx, slots.data(), outputs.data());
      spent[i] += Clock::now() - start;
      if (pool) out.kernels[i].wait_ms += static_cast<double>(pool->stats().barrier_ns - waited) * 1e-6;
    }
  }
  for (size_t i = 0; i < fns.size(); ++i) {
    out.kernels[i].calls = steps;
    out.kernels[i].total_ms = ms(spent[i]);
    out.kernels_ms += out.kernels[i].total_ms / steps;
  }
  std::stable_sort(out.kernels.begin(), out.kernels.end(),
                   [](const KernelTime& a, const KernelTime& b) { return a.total_ms > b.total_ms; });
  return out;
}

std::string format_profile(const EntryProfile& p, size_t max_rows) {
  std::string s;
  char line[512];
  double all = 0;
  for (auto& k : p.kernels) all += k.total_ms;
  std::snprintf(line, sizeof line,
                "%s at batch %lld on %d thread%s, %d steps: %.3f ms per step (%.0f samples/s); kernels one by one "
                "%.3f ms\n",
                p.entry.c_str(), static_cast<long long>(p.batch), p.threads, p.threads == 1 ? "" : "s", p.steps,
                p.step_ms, p.step_ms > 0 ? 1000.0 * static_cast<double>(p.batch) / p.step_ms : 0.0, p.kernels_ms);
  s += line;
  if (p.once_per_params > 0) {
    std::snprintf(line, sizeof line, "%d kernel%s of values of the params alone (run when the params change) not timed\n",
                  p.once_per_params, p.once_per_params == 1 ? "" : "s");
    s += line;
  }
  if (p.threads > 1) {
    std::snprintf(line, sizeof line,
                  "parallel: %.0f hand-offs per step; the caller waited %.3f ms per step for workers (%.1f%% of the "
                  "step); workers idle %.1f%% of the step\n",
                  p.parallel_calls, p.barrier_ms, p.step_ms > 0 ? 100.0 * p.barrier_ms / p.step_ms : 0.0,
                  100.0 * p.worker_idle);
    s += line;
  }
  // On several threads: the share of each kernel's time its caller waited for workers.
  const bool waits = p.threads > 1;
  std::snprintf(line, sizeof line, "%-44s %-16s %6s %10s %7s %9s %8s%s\n", "kernel", "JSON node", "calls", "total ms",
                "% step", "ms/call", "GFLOP/s", waits ? "  wait %" : "");
  s += line;
  size_t shown = 0;
  double rest_ms = 0;
  for (auto& k : p.kernels) {
    if (max_rows && shown == max_rows) {
      rest_ms += k.total_ms;
      continue;
    }
    ++shown;
    double per_call = k.calls ? k.total_ms / static_cast<double>(k.calls) : 0;
    char gflops[32] = "-";
    if (k.flops > 0 && per_call > 0) std::snprintf(gflops, sizeof gflops, "%.2f", k.flops / (per_call * 1e6));
    std::string name = k.kernel.size() > 44 ? k.kernel.substr(0, 41) + "..." : k.kernel;
    std::string origin = k.origin.empty() ? k.node : k.origin;
    if (origin.size() > 16) origin = origin.substr(0, 13) + "...";
    char wait[32] = "";
    if (waits && k.wait_ms > 0)
      std::snprintf(wait, sizeof wait, " %7.1f%%", k.total_ms > 0 ? 100.0 * k.wait_ms / k.total_ms : 0.0);
    else if (waits)
      std::snprintf(wait, sizeof wait, " %8s", "-");  // (no hand-off, or none that waited)
    std::snprintf(line, sizeof line, "%-44s %-16s %6lld %10.3f %6.1f%% %9.4f %8s%s\n", name.c_str(), origin.c_str(),
                  static_cast<long long>(k.calls), k.total_ms, all > 0 ? 100.0 * k.total_ms / all : 0.0, per_call,
                  gflops, wait);
    s += line;
  }
  if (shown < p.kernels.size()) {
    std::snprintf(line, sizeof line, "%-44s %-16s %6s %10.3f %6.1f%%\n",
                  ("(" + std::to_string(p.kernels.size() - shown) + " more kernels)").c_str(), "", "", rest_ms,
                  all > 0 ? 100.0 * rest_ms / all : 0.0);
    s += line;
  }
  return s;
}

EntryBuffers random_entry_buffers(const lower::Entry& entry, int64_t batch, uint64_t seed,
                                  const std::string& features_input, double lr) {
  auto feeds = random_feeds(entry, batch, seed);
  if (feeds.count(features_input))
    for (auto& v : feeds.at(features_input).data) v = (v + 1) / 2;
  if (feeds.count(kLearningRateInput)) feeds.at(kLearningRateInput).data = {lr};
  if (feeds.count(kFirstSampleInput)) feeds.at(kFirstSampleInput).data = {0};
  EntryBuffers b;
  for (auto& t : entry.inputs) b.input_bytes.push_back(to_bytes(feeds.at(t.name), t.dtype));
  for (auto& t : entry.outputs)
    b.output_bytes.emplace_back(static_cast<size_t>(numel(t.shape, batch) * static_cast<int64_t>(dtype_size(t.dtype))) + 8);
  for (auto& v : b.input_bytes) b.inputs.push_back(v.data());
  for (auto& v : b.output_bytes) b.outputs.push_back(v.data());
  return b;
}

}  // namespace kiln::codegen
