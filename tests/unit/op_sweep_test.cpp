// The registry sweep: every op's sample cases run through the JIT against the
// f64 interpreter, and through gradcheck in f64 where the op is
// differentiable. An op with no samples fails; so does one whose registration
// forgot to declare its pattern.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <random>
#include <sstream>

#include "compiler/autodiff/gradcheck.h"
#include "compiler/codegen/host.h"
#include "compiler/codegen/jit.h"
#include "compiler/interp/interpreter.h"
#include "compiler/ir/builder.h"
#include "compiler/ops/registry.h"
#include "compiler/passes/modes.h"
#include "runtime/program.h"

using namespace kiln;
using interp::Value;

namespace {

constexpr int64_t kBatch = 3;     // the open dimension at run time (odd, below the compiled maximum)
constexpr int64_t kMaxBatch = 8;

std::string describe(const OpDef& def, size_t k) {
  const OpSample& s = def.samples[k];
  std::ostringstream os;
  os << def.name << " sample " << k << ":";
  for (auto& in : s.inputs) os << " " << dtype_name(in.dtype) << shape_str(in.shape);
  os << " " << s.attrs.dump();
  return os.str();
}

Value draw(const SampleInput& in, std::mt19937_64& rng) {
  Shape shape = in.shape;
  for (auto& d : shape)
    if (d == kOpenDim) d = kBatch;
  Value v{in.dtype, shape, std::vector<double>(static_cast<size_t>(numel(shape)))};
  std::uniform_real_distribution<double> real(in.lo, in.hi);
  for (double& x : v.data) {
    double r = real(rng);
    if (in.dtype == DType::boolean) x = r > (in.lo + in.hi) / 2;
    else if (is_float(in.dtype)) x = static_cast<double>(static_cast<float>(r));
    else x = std::floor(r);
  }
  return v;
}

// Special values planted in the float inputs: every fifth element (offset by
// the input's position, so operands differ) becomes a NaN, or +-infinity.
enum class Planted { none, nan, inf };

void plant(Value& v, size_t input, Planted what) {
  if (what == Planted::none || !is_float(v.dtype)) return;
  for (size_t i = input % 5; i < v.data.size(); i += 5)
    v.data[i] = what == Planted::nan ? NAN : (i % 2 ? INFINITY : -INFINITY);
}

// With planted specials, the JIT's NaN and infinity positions must be the
// interpreter's (kiln's NaN semantics, README), integer and bool results equal.
void check_specials(const Value& got, const Value& want) {
  int64_t nan_mismatch = -1, inf_mismatch = -1, value_mismatch = -1;
  for (size_t i = 0; i < want.data.size(); ++i) {
    double g = got.data[i], w = want.data[i];
    if (std::isnan(g) != std::isnan(w) && nan_mismatch < 0) nan_mismatch = static_cast<int64_t>(i);
    if (std::isinf(g) != std::isinf(w) && inf_mismatch < 0) inf_mismatch = static_cast<int64_t>(i);
    if (!is_float(want.dtype) && g != w && value_mismatch < 0) value_mismatch = static_cast<int64_t>(i);
  }
  auto at = [&](int64_t i) {
    return "element " + std::to_string(i) + ": jit " + std::to_string(got.data[static_cast<size_t>(i)]) +
           ", interpreter " + std::to_string(want.data[static_cast<size_t>(i)]);
  };
  if (nan_mismatch >= 0) FAIL_CHECK("NaN positions differ at " << at(nan_mismatch));
  if (inf_mismatch >= 0) FAIL_CHECK("infinity positions differ at " << at(inf_mismatch));
  if (value_mismatch >= 0) FAIL_CHECK("integer results differ at " << at(value_mismatch));
}

// JIT (f32 where the sample is f32) against the f64 interpreter:
// max |jit - oracle| <= tol * max(1, max |oracle|); exact for integers and bools.
// Compiled for `vector_bits` (0: the host's width).
void check_jit(const OpDef& def, size_t k, int vector_bits, Mode mode, Planted planted = Planted::none) {
  const OpSample& s = def.samples[k];
  Graph g;
  g.name = "sweep_" + def.name;
  GraphBuilder b(g);
  std::map<std::string, Value> feeds;
  std::mt19937_64 rng(20261203 + k);
  std::vector<NodeId> in;
  for (size_t i = 0; i < s.inputs.size(); ++i) {
    std::string name = "x" + std::to_string(i);
    feeds[name] = draw(s.inputs[i], rng);
    plant(feeds[name], i, planted);
    in.push_back(b.input(name, {s.inputs[i].dtype, s.inputs[i].shape}));
  }
  g.outputs.push_back({"y", b.add(def.name, in, s.attrs)});
  specialize_mode(g, {mode});
  auto cp = codegen::compile_entries(g.name, {{"eval_step", &g, {"y"}, {}}}, {.max_batch = kMaxBatch},
                                     {.vector_bits = vector_bits});
  Program prog(cp->info());
  Value got = codegen::run_entry(prog, "eval_step", kBatch, feeds).at("y");
  Value want = interp::Interpreter(g, interp::Precision::f64).run(feeds, {"y"}).at("y");
  REQUIRE(got.shape == want.shape);
  if (planted != Planted::none) return check_specials(got, want);
  double max_ref = 0, max_diff = 0;
  for (size_t i = 0; i < want.data.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(want.data[i]));
    double d = std::fabs(got.data[i] - want.data[i]);
    if (!(d <= max_diff)) max_diff = d;
  }
  INFO("max |jit - f64 interpreter| = " << max_diff << ", max |interpreter| = " << max_ref);
  if (is_float(want.dtype)) CHECK(max_diff <= 2e-5 * std::max(1.0, max_ref));
  else CHECK(max_diff == 0);
}

// The loss is sum(y * fixed random weights); gradcheck compares autodiff
// with finite differences in f64 with respect to every float input, drawn
// from the sample's ranges (the open dimension is gradcheck's batch).
void check_gradient(const OpDef& def, size_t k, Mode mode) {
  const OpSample& s = def.samples[k];
  GradcheckOptions opt;
  opt.batch = kBatch;
  opt.samples = 6;
  opt.full_check_limit = 64;
  opt.check_inputs = true;
  Graph g;
  g.name = "sweep_grad_" + def.name;
  GraphBuilder b(g);
  std::vector<NodeId> in;
  bool any_float = false;
  for (size_t i = 0; i < s.inputs.size(); ++i) {
    const SampleInput& x = s.inputs[i];
    std::string name = "x" + std::to_string(i);
    in.push_back(b.input(name, {x.dtype, x.shape}));
    opt.input_ranges[name] = {x.lo, x.hi};
    any_float = any_float || is_float(x.dtype);
  }
  if (!any_float) return;  // nothing to differentiate (an integer cast, one_hot)
  NodeId y = b.add(def.name, in, s.attrs);
  TensorType t = g.node(y).type;
  if (!is_float(t.dtype)) return;
  // Weights of y's shape (the open dimension as gradcheck's batch), broadcast back to it.
  Shape fixed = t.shape;
  for (auto& d : fixed)
    if (d == kOpenDim) d = 1;
  std::mt19937_64 rng(7 + k);
  std::uniform_real_distribution<double> weight(0.5, 1.5);
  std::vector<double> w(static_cast<size_t>(numel(fixed)));
  for (double& v : w) v = weight(rng);
  NodeId weights = b.add("constant", {}, {{"value", w}, {"shape", fixed}, {"dtype", dtype_name(t.dtype)}});
  g.outputs.push_back({"loss", b.add1("reduce_sum", b.add2("mul", y, weights))});
  specialize_mode(g, {mode});
  GradcheckReport r = gradcheck(g, opt);
  INFO(r.text());
  CHECK(r.passed());
  for (const ParamCheck& p : r.params) CHECK(p.coordinates > 0);  // not every coordinate skipped at a kink
}

// Ops that differ between training and inference run in both forms.
std::vector<Mode> modes_of(const OpDef& def) {
  return def.by_mode ? std::vector<Mode>{Mode::train, Mode::infer} : std::vector<Mode>{Mode::infer};
}

std::string mode_name(Mode m) { return m == Mode::train ? "training" : "inference"; }

bool differentiable(const OpDef& def) {
  return !def.no_grad && (def.grad || def.composite() || def.by_mode);
}

// check(def, sample, mode) for every sample of every op `wanted` accepts, in each of the op's modes.
void for_each_sample(const std::function<bool(const OpDef&)>& wanted,
                     const std::function<void(const OpDef&, size_t, Mode)>& check) {
  for (const OpDef& def : OpRegistry::get().all()) {
    if (!wanted(def)) continue;
    for (size_t k = 0; k < def.samples.size(); ++k)
      for (Mode m : modes_of(def)) {
        CAPTURE(describe(def, k));
        CAPTURE(mode_name(m));
        check(def, k, m);
      }
  }
}

bool every_op(const OpDef&) { return true; }

}  // namespace

TEST_CASE("registry: every op declares its pattern and carries samples") {
  std::vector<std::string> no_pattern, no_samples;
  for (const OpDef& def : OpRegistry::get().all()) {
    if (def.pattern == OpPattern::unset) no_pattern.push_back(def.name);
    // Inputs and params are what a sample feeds; they have no sample of their own.
    if (!def.interface && def.samples.empty()) no_samples.push_back(def.name);
  }
  std::string a, b;
  for (auto& n : no_pattern) a += " " + n;
  for (auto& n : no_samples) b += " " + n;
  INFO("no pattern:" << a);
  CHECK(no_pattern.empty());
  INFO("no samples:" << b);
  CHECK(no_samples.empty());
}

TEST_CASE("registry sweep: every sample of every op, JIT against the f64 interpreter") {
  for_each_sample(every_op, [](const OpDef& def, size_t k, Mode m) { check_jit(def, k, 0, m); });
}

// An AVX-512 host also runs every sample through the AVX2 kernels (a host
// runs the narrower width too); elsewhere this says why it is skipped.
TEST_CASE("registry sweep: the 256-bit kernels too, where the host is wider") {
  if (codegen::host_target().vector_bits <= 256) {
    MESSAGE("skipped: the host's own width is 256 bits or less (the sweep above ran it)");
    return;
  }
  for_each_sample(every_op, [](const OpDef& def, size_t k, Mode m) { check_jit(def, k, 256, m); });
}

TEST_CASE("registry sweep: every differentiable op's samples pass gradcheck in f64") {
  for_each_sample(differentiable, check_gradient);
}

// kiln's NaN semantics (README "NaN and infinity"): every op, fed NaNs, then
// infinities, in the scalar, vector and tail parts of its loops, at every
// vector width the host runs.
TEST_CASE("registry sweep: NaN and infinity inputs give the interpreter's NaN positions") {
  std::vector<int> widths{0};
  if (codegen::host_target().vector_bits > 256) widths.push_back(256);
  for (Planted planted : {Planted::nan, Planted::inf})
    for (int bits : widths)
      for_each_sample(every_op, [&](const OpDef& def, size_t k, Mode m) {
        CAPTURE(planted == Planted::nan ? "NaN planted" : "infinity planted");
        CAPTURE(bits);
        check_jit(def, k, bits, m, planted);
      });
}
