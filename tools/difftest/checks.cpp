// The checks each random graph goes through (DIFFTEST.md: the tolerance).
#include <dlfcn.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "compiler/autodiff/autodiff.h"
#include "compiler/autodiff/gradcheck.h"
#include "compiler/autodiff/train_step.h"
#include "compiler/codegen/aot.h"
#include "compiler/codegen/host.h"
#include "compiler/codegen/jit.h"
#include "compiler/ops/registry.h"
#include "compiler/passes/modes.h"
#include "compiler/passes/pass_manager.h"
#include "runtime/aot_program.h"
#include "runtime/thread_pool.h"
#include "tools/difftest/difftest.h"

namespace kiln::difftest {

using interp::Value;
using Values = std::map<std::string, Value>;

std::string check_name(Check c) {
  switch (c) {
    case Check::jit: return "jit";
    case Check::fusion_off: return "fusion-off";
    case Check::threads: return "threads";
    case Check::aot: return "aot";
    case Check::width_256: return "width-256";
    case Check::train_step: return "train-step";
    case Check::gradcheck: return "gradcheck";
  }
  return "?";
}

std::vector<Check> all_checks() {
  return {Check::jit, Check::fusion_off, Check::threads, Check::aot, Check::width_256, Check::train_step,
          Check::gradcheck};
}

namespace {

constexpr double kEpsF32 = 1.0 / (1 << 24);
constexpr double kSafety = 16;  // DIFFTEST.md: the bound's constant

// Per node of a graph the interpreter ran in f64: M, the largest finite
// magnitude among the node and everything it is computed from, and L, the
// rounding steps on its longest path (a sum of n terms counts n, any other
// op 4: libm-grade functions are within a few ulp). The bound on
// |compiled - f64| is kSafety * eps_f32 * L * M.
struct ErrorBounds {
  std::map<std::string, double> bound;
};

ErrorBounds error_bounds(const Graph& g, const Values& all) {
  std::vector<double> magnitude(g.nodes.size(), 0), steps(g.nodes.size(), 0);
  ErrorBounds out;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    double m = 0, l = 0;
    if (auto it = all.find(n.name); it != all.end() && is_float(it->second.dtype))
      for (double x : it->second.data)
        if (std::isfinite(x)) m = std::max(m, std::fabs(x));
    double in_elems = 0;
    for (NodeId in : n.inputs) {
      m = std::max(m, magnitude[static_cast<size_t>(in)]);
      l = std::max(l, steps[static_cast<size_t>(in)]);
      in_elems += static_cast<double>(numel(g.node(in).type.shape, 1));
    }
    double own = 4;
    const OpDef* def = OpRegistry::get().find(n.op);
    double out_elems = std::max<double>(1, static_cast<double>(numel(n.type.shape, 1)));
    if (def && def->gemms) own = std::max(own, static_cast<double>(multiply_adds(g, n)) / out_elems);
    else if (def && (def->pattern == OpPattern::reduction || def->pattern == OpPattern::opaque))
      own = std::max(own, in_elems / out_elems);
    magnitude[i] = m;
    steps[i] = l + own;
    out.bound[n.name] = kSafety * kEpsF32 * steps[i] * std::max(1.0, m);
  }
  return out;
}

std::string value_str(double v) {
  std::ostringstream os;
  os.precision(9);
  os << v;
  return os.str();
}

// "" when `got` is within `bound` of `want` everywhere, NaN and infinity
// positions equal (exact for integers and bools); else the first difference.
std::string compare(const std::string& what, const Value& got, const Value& want, double bound) {
  if (got.data.size() != want.data.size())
    return what + ": " + std::to_string(got.data.size()) + " elements, the reference has " + std::to_string(want.data.size());
  for (size_t i = 0; i < want.data.size(); ++i) {
    double g = got.data[i], w = want.data[i];
    // The f64 reference as an f32 result would be: past f32's range it is an infinity there.
    if (want.dtype == DType::f32) w = static_cast<double>(static_cast<float>(w));
    bool ok;
    if (std::isnan(w) || std::isnan(g)) ok = std::isnan(w) && std::isnan(g);
    else if (std::isinf(w) || std::isinf(g)) ok = g == w;
    else ok = is_float(want.dtype) ? std::fabs(g - w) <= bound : g == w;
    if (!ok)
      return what + " element " + std::to_string(i) + ": " + value_str(g) + ", reference " + value_str(w) +
             " (bound " + value_str(is_float(want.dtype) ? bound : 0) + ")";
  }
  return "";
}

// Bitwise: the same program run differently must give the same bits.
std::string compare_bits(const std::string& what, const Values& got, const Values& want) {
  for (auto& [name, w] : want) {
    const Value& g = got.at(name);
    for (size_t i = 0; i < w.data.size(); ++i) {
      bool same = std::isnan(w.data[i]) ? std::isnan(g.data[i])
                                        : std::memcmp(&g.data[i], &w.data[i], sizeof(double)) == 0;
      if (!same)
        return what + ": output " + name + " element " + std::to_string(i) + " is " + value_str(g.data[i]) +
               ", not " + value_str(w.data[i]);
    }
  }
  return "";
}

std::vector<std::string> output_names(const Graph& g) {
  std::vector<std::string> out;
  for (auto& [name, id] : g.outputs) out.push_back(name);
  return out;
}

// The forward graph as kiln compiles it for eval_step: inference form, simplified.
struct Forward {
  Graph reference;  // inference form, before the passes (the oracle runs this)
  Graph compiled;
};

Forward forward_graphs(const Graph& model) {
  Forward f{model, model};
  specialize_mode(f.reference, {Mode::infer});
  specialize_mode(f.compiled, {Mode::infer});
  run_pipeline(f.compiled, "simplify");
  return f;
}

std::unique_ptr<codegen::CompiledProgram> compile_forward(const Graph& g, int64_t max_batch, bool fuse, int bits) {
  return codegen::compile_entries(g.name, {{"eval_step", &g, output_names(g), {}}},
                                  {.max_batch = max_batch, .fuse = fuse}, {.vector_bits = bits});
}

Values run_program(Program& prog, int64_t batch, const Values& feeds) {
  return codegen::run_entry(prog, "eval_step", batch, feeds);
}

// AOT: the object linked into a shared library and loaded; empty when no
// C compiler is installed (the check then does not run).
struct LoadedAot {
  std::shared_ptr<void> library;
  const kiln_aot_program* desc = nullptr;
};

std::optional<LoadedAot> load_aot(const lower::Program& p, uint64_t seed) {
  const char* cc = std::getenv("CC");
  std::string compiler = cc && *cc ? cc : "cc";
  if (std::system(("command -v " + compiler + " >/dev/null 2>&1").c_str()) != 0) return std::nullopt;
  codegen::AotOptions o;
  o.prefix = "difftest";
  o.init_json = "{}";
  codegen::AotResult r = codegen::compile_aot(p, o);
  auto dir = std::filesystem::temp_directory_path() /
             ("kiln-difftest-" + std::to_string(::getpid()) + "-" + std::to_string(seed));
  std::filesystem::create_directories(dir);
  std::string obj = (dir / "g.o").string(), lib = (dir / "g.so").string();
  std::ofstream(obj, std::ios::binary).write(reinterpret_cast<const char*>(r.object.data()),
                                             static_cast<std::streamsize>(r.object.size()));
  std::string cmd = compiler + " -shared -o '" + lib + "' '" + obj + "' -lm 2>&1";
  int rc = std::system(cmd.c_str());
  void* handle = rc == 0 ? dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL) : nullptr;
  std::filesystem::remove_all(dir);  // a loaded library stays mapped
  if (!handle) throw std::runtime_error("aot: linking or loading the object failed (" + cmd + ")");
  auto fn = reinterpret_cast<const kiln_aot_program* (*)()>(dlsym(handle, "difftest_program"));
  if (!fn) throw std::runtime_error("aot: difftest_program not found in the object");
  return LoadedAot{std::shared_ptr<void>(handle, [](void* h) { dlclose(h); }), fn()};
}

class CaseChecker {
 public:
  CaseChecker(const Case& c, const CheckOptions& o) : c_(c), o_(o), fwd_(forward_graphs(c.model)) {
    std::mt19937_64 rng(c.seed ^ 0x9e3779b97f4a7c15ull);
    batch_ = c_.large ? 2 + static_cast<int64_t>(rng() % 15) : 1 + static_cast<int64_t>(rng() % 5);
    max_batch_ = batch_ + static_cast<int64_t>(rng() % 3);
  }

  CaseResult run() {
    for (Check k : o_.checks) {
      if (!applies(k)) continue;
      std::string first = guarded(k, c_.seed);
      if (first == kNotApplicable) continue;
      result_.ran.push_back(k);
      if (first.empty()) continue;
      // A mismatch that vanishes on fresh inputs was a kink crossed by
      // rounding (a near-tie in an argmax, a relu at ~0), not a wrong kernel.
      int recurred = 0;
      for (int d = 1; d <= o_.confirm_draws; ++d) recurred += !guarded(k, c_.seed + 7919 * d).empty();
      if (recurred == o_.confirm_draws) result_.findings.push_back({k, first});
      else ++result_.unconfirmed;
    }
    return result_;
  }

 private:
  static constexpr const char* kNotApplicable = "n/a";

  // mismatch(), with an exception as a finding, except where the graph has
  // no training step to build (a gradient kiln does not define).
  std::string guarded(Check k, uint64_t seed) {
    try {
      return mismatch(k, seed);
    } catch (const AutodiffError&) {
      return kNotApplicable;
    } catch (const std::invalid_argument&) {
      return kNotApplicable;
    } catch (const std::exception& e) {
      return std::string("threw: ") + e.what();
    }
  }

  bool applies(Check k) {
    switch (k) {
      case Check::width_256: return codegen::host_target().vector_bits > 256;
      case Check::train_step: return has_trainable() && o_.planted == Planted::none;
      // A loss summing 10^5 terms carries more rounding noise than central
      // differences at gradcheck's tolerance resolve: small graphs only.
      case Check::gradcheck: return has_trainable() && o_.planted == Planted::none && !c_.large;
      default: return true;
    }
  }

  bool has_trainable() const {
    for (const Node& n : c_.model.nodes)
      if (n.op == "param" && is_trainable(n) && is_float(n.type.dtype)) return true;
    return false;
  }

  static bool leaves_f32_range(const Graph& g, const Values& all) {
    for (const Node& n : g.nodes) {
      auto it = all.find(n.name);
      if (n.type.dtype != DType::f32 || it == all.end()) continue;
      for (double x : it->second.data)
        if (std::isfinite(x) && std::fabs(x) > std::numeric_limits<float>::max()) return true;
    }
    return false;
  }

  // Every node's value from the interpreter in f64 and with every f32
  // result rounded to f32 (the compiled code's arithmetic, op by op).
  struct Oracle {
    Values f64;  // empty where it does not apply (see reference_all)
    Values f32;
    const Values& primary() const { return f64.empty() ? f32 : f64; }
  };

  Oracle reference_all(const Graph& g, const Values& feeds) {
    std::vector<std::string> names;
    for (const Node& n : g.nodes) names.push_back(n.name);
    for (auto& [name, id] : g.outputs) names.push_back(name);
    Oracle o;
    o.f32 = interp::Interpreter(g, interp::Precision::f32).run(feeds, names);
    // f64 is the oracle, unless specials are planted or a value leaves f32's
    // range (1 / 1e-40, a product of 4099 terms): a value must overflow
    // where the compiled code's does.
    if (o_.planted == Planted::none) {
      o.f64 = interp::Interpreter(g, interp::Precision::f64).run(feeds, names);
      if (leaves_f32_range(g, o.f64)) o.f64.clear();
    }
    return o;
  }

  // A mismatch against the primary oracle that the f32-rounding one does not
  // share is f32's own answer (ceil(-3 + 5e-12) is -3 in f32), not a bug.
  static std::string compare_oracles(const std::string& what, const Value& got, const Oracle& o, const std::string& key,
                                     double bound) {
    std::string m = compare(what, got, o.primary().at(key), bound);
    if (m.empty() || o.f64.empty()) return m;
    return compare(what, got, o.f32.at(key), bound).empty() ? "" : m;
  }

  std::string against_reference(const std::string& what, const Graph& g, const Values& got, const Oracle& ref) {
    ErrorBounds eb = error_bounds(g, ref.primary());
    for (auto& [name, id] : g.outputs) {
      std::string m = compare_oracles(what + " output " + name, got.at(name), ref, name, eb.bound.at(g.node(id).name));
      if (!m.empty()) return m;
    }
    return "";
  }

  // The first mismatch of check k on inputs drawn with `seed`, or "".
  std::string mismatch(Check k, uint64_t seed) {
    Values feeds = draw_values(c_, batch_, seed, o_.planted);
    if (k == Check::gradcheck) return gradcheck_mismatch(seed);
    if (k == Check::train_step) return train_step_mismatch(feeds);
    if (!host_) host_ = compile_forward(fwd_.compiled, max_batch_, true, 0);
    Program one(host_->info());
    Values base = run_program(one, batch_, feeds);
    switch (k) {
      case Check::jit: return against_reference("jit", fwd_.reference, base, reference_all(fwd_.reference, feeds));
      case Check::threads: {
        ThreadPool pool(2);
        Program two(host_->info(), &pool);
        return compare_bits("2 threads against 1", run_program(two, batch_, feeds), base);
      }
      case Check::fusion_off: {
        auto cp = compile_forward(fwd_.compiled, max_batch_, false, 0);
        Program p(cp->info());
        return against_reference("fusion off", fwd_.reference, run_program(p, batch_, feeds),
                                 reference_all(fwd_.reference, feeds));
      }
      case Check::width_256: {
        auto cp = compile_forward(fwd_.compiled, max_batch_, true, 256);
        Program p(cp->info());
        return against_reference("256-bit kernels", fwd_.reference, run_program(p, batch_, feeds),
                                 reference_all(fwd_.reference, feeds));
      }
      case Check::aot: {
        auto aot = load_aot(host_->loops(), c_.seed);
        if (!aot) return "";
        ProgramInfo info = aot_program_info(aot->desc);
        info.code = aot->library;
        Program p(info);
        return compare_bits("AOT against JIT", run_program(p, batch_, feeds), base);
      }
      default: return "";
    }
  }

  // One training step (Adam or momentum, by seed), compiled against the
  // interpreter on the step graph as autodiff built it (before the passes).
  std::string train_step_mismatch(Values feeds) {
    TrainStepConfig config;
    config.optimizer = builtin_update_rule(c_.seed % 2 ? "adam" : "momentum");
    Graph step = build_train_step(c_.model, config);
    Graph compiled = step;
    run_pipeline(compiled, "simplify");
    lower::EntrySpec e{"train_step", &compiled, {"loss"}, compiled.updates};
    auto cp = codegen::compile_entries(compiled.name, {e}, {.max_batch = max_batch_});
    Program prog(cp->info());
    Values params;
    for (const Node& n : c_.model.nodes)
      if (n.op == "param") params[n.name] = feeds.at(n.name);
    for (auto& [name, v] : initial_optimizer_state(step, params)) feeds[name] = v;
    feeds[kLearningRateInput] = Value{DType::f32, {}, {0.01}};
    if (step.find(kFirstSampleInput) != kNoNode) feeds[kFirstSampleInput] = Value{DType::i64, {}, {0}};
    Oracle ref = reference_all(step, feeds);
    Values got = codegen::run_entry(prog, "train_step", batch_, feeds);
    ErrorBounds eb = error_bounds(step, ref.primary());
    std::string m = compare_oracles("train step loss", got.at("loss"), ref, "loss",
                                    eb.bound.at(step.node(step.output("loss")).name));
    if (!m.empty()) return m;
    for (auto& [persistent, value] : step.updates) {
      const std::string& name = step.node(persistent).name;
      const std::string& value_name = step.node(value).name;
      const Value& want = ref.primary().at(value_name);
      Value now = codegen::from_bytes(prog.persistent(name), want.dtype, want.shape);
      m = compare_oracles("train step update of " + name, now, ref, value_name, eb.bound.at(value_name));
      if (!m.empty()) return m;
    }
    return "";
  }

  std::string gradcheck_mismatch(uint64_t seed) {
    GradcheckOptions opt;
    opt.seed = seed;
    opt.batch = std::min<int64_t>(batch_, 3);
    opt.samples = 4;
    opt.full_check_limit = 24;
    // A wrong gradient rule is off by O(1); central differences of a random
    // loss that sums thousands of terms which cancel carry ~1e-5 of noise.
    opt.tolerance = 1e-4;
    for (auto& [name, r] : c_.ranges)
      if (r.index_bound == 0) opt.input_ranges[name] = {r.lo, r.hi};
    GradcheckReport r = gradcheck(c_.model, opt);
    return r.passed() ? "" : "gradcheck in f64:\n" + r.text();
  }

  const Case& c_;
  CheckOptions o_;
  Forward fwd_;
  int64_t batch_ = 1, max_batch_ = 1;
  std::unique_ptr<codegen::CompiledProgram> host_;
  CaseResult result_;
};

}  // namespace

CaseResult check_case(const Case& c, const CheckOptions& options) { return CaseChecker(c, options).run(); }

}  // namespace kiln::difftest
