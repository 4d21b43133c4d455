// f32 exp, log and tanh emitted inline (compiler/codegen/vector_math.h):
// within 2 ulp of the correctly rounded value over their whole ranges (erf
// within 3e-7, and 8 ulp near 0: its rational fit's error in f32), libm's
// special values, and the same bits at every vector width and in a loop's
// masked last vector (the 1001 inputs leave a partial vector at every width).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "compiler/codegen/codegen.h"
#include "compiler/lower/lower_program.h"
#include "runtime/float_mode.h"
#include "runtime/thread_pool.h"
#include "tests/unit/codegen_helpers.h"

using namespace kiln;
using kiln::codegen_test::JitCase;
using kiln::interp::Value;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Inputs: a sweep over each function's interesting range plus special values.
std::vector<double> sweep(double lo, double hi, int n) {
  std::vector<double> v;
  for (int i = 0; i < n; ++i) v.push_back(static_cast<float>(lo + (hi - lo) * i / (n - 1)));
  return v;
}

// (IEEE denormals kept: the functions' own underflow through them is checked.)
std::map<std::string, Value> run(const std::vector<double>& xs, int bits) {
  JitCase t(static_cast<int64_t>(xs.size()), static_cast<int64_t>(xs.size()));
  NodeId x = t.input("x", {-1});
  t.feeds["x"].data = xs;
  std::vector<std::string> names = {"exp", "log", "tanh", "erf"};
  for (const std::string& op : names) t.out(op, t.op(op, {x}));
  auto cp = codegen::compile_entries(t.g.name, {{"eval_step", &t.g, names, {}}}, {.max_batch = t.max_batch},
                                     {.vector_bits = bits});
  Program prog(cp->info());
  prog.set_flush_denormals(false);
  return codegen::run_entry(prog, "eval_step", t.batch, t.feeds);
}

// Distance in units of the last place of the f32 nearest the exact value.
double ulps(double got, double exact) {
  const float want = static_cast<float>(exact);
  if (std::isnan(exact)) return std::isnan(got) ? 0 : kInf;
  if (std::isinf(want) || want == 0) return got == want ? 0 : std::fabs(got - exact) / std::numeric_limits<float>::denorm_min();
  const double ulp = static_cast<double>(std::nextafter(std::fabs(want), std::numeric_limits<float>::infinity())) -
                     std::fabs(want);
  return std::fabs(got - exact) / ulp;
}

}  // namespace

TEST_CASE("vector math: exp, log and tanh within 2 ulp, erf within 3e-7, libm's special values, same bits at every width") {
  std::vector<double> xs = sweep(-110, 90, 600);
  for (double v : sweep(-3, 3, 300)) xs.push_back(v);
  for (double v : {0.0, -0.0, 1e-40, -1e-40, 1e-30, 0.5, 1.0, 2.0, 88.7, 88.73, -87.5, -103.0, -104.5, kInf, -kInf,
                   std::numeric_limits<double>::quiet_NaN(), 1e-7, -1e-7, 0.6249, 0.6251, 9.1, -9.1, 20.0, 3e38})
    xs.push_back(static_cast<float>(v));
  while (xs.size() < 1001) xs.push_back(static_cast<float>(0.01 * static_cast<double>(xs.size())));
  REQUIRE(xs.size() == 1001);
  auto base = run(xs, 512);
  for (size_t i = 0; i < xs.size(); ++i) {
    const double x = xs[i];
    CAPTURE(x);
    CHECK(ulps(base.at("exp").data[i], std::exp(x)) <= 2);
    CHECK(ulps(base.at("tanh").data[i], std::tanh(x)) <= 2);
    CHECK(ulps(base.at("log").data[i], std::log(x)) <= 2);
    if (!std::isnan(x)) CHECK(std::fabs(base.at("erf").data[i] - std::erf(x)) <= 3e-7);
    if (std::fabs(x) < 0.5) CHECK(ulps(base.at("erf").data[i], std::erf(x)) <= 8);  // relative near 0
  }
  // The special values exactly.
  auto at = [&](const char* f, double x) {
    for (size_t i = 0; i < xs.size(); ++i)
      if (std::memcmp(&xs[i], &x, sizeof x) == 0) return base.at(f).data[i];
    FAIL("input not in the sweep");
    return 0.0;
  };
  CHECK(at("exp", kInf) == kInf);
  CHECK(at("exp", -kInf) == 0);
  CHECK(at("exp", 0.0) == 1);
  CHECK(at("exp", static_cast<float>(88.73)) == kInf);
  CHECK(at("log", 0.0) == -kInf);
  CHECK(at("log", -0.0) == -kInf);
  CHECK(std::isnan(at("log", static_cast<float>(-1e-7))));
  CHECK(at("log", kInf) == kInf);
  CHECK(at("log", 1.0) == 0);
  CHECK(at("tanh", kInf) == 1);
  CHECK(at("tanh", -kInf) == -1);
  CHECK(std::signbit(at("tanh", -0.0)));
  CHECK(std::signbit(at("exp", -kInf)) == false);
  CHECK(at("erf", kInf) == 1);
  CHECK(at("erf", -kInf) == -1);
  CHECK(at("erf", static_cast<float>(9.1)) == 1);
  CHECK(std::signbit(at("erf", -0.0)));
  for (const char* f : {"exp", "log", "tanh", "erf"}) CHECK(std::isnan(at(f, std::numeric_limits<double>::quiet_NaN())));
  // Every width (and the masked last vector) gives the same bits.
  for (int bits : {128, 256}) {
    CAPTURE(bits);
    auto other = run(xs, bits);
    for (const char* f : {"exp", "log", "tanh", "erf"}) {
      CAPTURE(f);
      for (size_t i = 0; i < xs.size(); ++i) {
        const double a = base.at(f).data[i], b = other.at(f).data[i];
        CHECK(((std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, sizeof a) == 0));
      }
    }
  }
}

TEST_CASE("vector tails: a row of partials read back by the next row ends in scalars, other loops in a masked vector") {
  // Per-channel sums of 6 channels (a bias gradient): each row adds into the
  // same 6 partials, so the loop over rows reads back what the last row
  // stored; a masked store there would stall every next load.
  codegen_test::JitCase t(3, 4);
  NodeId x = t.input("x", {-1, 28, 28, 6});
  NodeId sums_node = t.op("reduce_sum", {x}, {{"axes", {0, 1, 2}}});
  NodeId tanh_node = t.op("tanh", {t.input("y", {-1, 6})});
  t.out("channel_sums", sums_node);
  t.out("squashed", tanh_node);
  t.check(1e-4);
  lower::Program p = lower::lower_program("tails", {{"eval_step", &t.g, {"channel_sums", "squashed"}, {}}}, {.max_batch = 32});
  for (auto [bits, cpu] : {std::pair{256, "znver3"}, std::pair{512, "znver4"}}) {  // compiled, not run: any host
    CAPTURE(bits);
    const codegen::CodegenOptions opts{.vector_bits = bits, .target_cpu = cpu, .optimize = false};
    const std::string sums = codegen::llvm_ir_text(p, "k0_" + t.g.node(sums_node).name, opts);
    const std::string squashed = codegen::llvm_ir_text(p, "k1_" + t.g.node(tanh_node).name, opts);
    REQUIRE(!sums.empty());
    REQUIRE(!squashed.empty());
    CHECK(sums.find("llvm.masked.load") == std::string::npos);  // (the zero fill of the sums may store masked)
    CHECK(squashed.find("llvm.masked.store") != std::string::npos);
  }
}

TEST_CASE("float mode: entries flush denormal results to zero on every thread, and keep them when asked") {
  // exp(-95) = 5.5e-42 is a denormal, exp(-80) = 1.8e-35 is not. 2^16
  // elements: the loop goes to the pool, so a worker runs a chunk too.
  const int64_t n = int64_t{1} << 16;
  JitCase t(n, n);
  NodeId x = t.input("x", {-1});
  for (int64_t i = 0; i < n; ++i) t.feeds["x"].data[static_cast<size_t>(i)] = i % 2 ? -95.0 : -80.0;
  t.out("exp", t.op("exp", {x}));
  auto cp = codegen::compile_entries(t.g.name, {{"eval_step", &t.g, {"exp"}, {}}}, {.max_batch = n});
  ThreadPool pool(2);
  Program prog(cp->info(), &pool);
  REQUIRE_FALSE(denormals_flushed());  // this thread, outside entries
  CHECK(prog.flush_denormals());  // the default
  auto count = [&](const Value& v, double want) {
    int64_t same = 0;
    for (int64_t i = 0; i < n; ++i) same += v.data[static_cast<size_t>(i)] == (i % 2 ? want : double(std::exp(-80.0f)));
    return same;
  };
  const double denormal = static_cast<double>(std::exp(-95.0f));
  REQUIRE(denormal > 0);
  REQUIRE(denormal < std::numeric_limits<float>::min());
  auto flushed = codegen::run_entry(prog, "eval_step", n, t.feeds);
  CHECK(count(flushed.at("exp"), 0.0) == n);  // every chunk, whichever thread ran it
  CHECK_FALSE(denormals_flushed());           // the caller's mode given back
  // Kept: the worker that last ran flushed takes the caller's mode with the job.
  prog.set_flush_denormals(false);
  auto kept = codegen::run_entry(prog, "eval_step", n, t.feeds);
  CHECK(count(kept.at("exp"), denormal) >= n - n / 64);  // within 2 ulp of the denormal: all but a few exactly
  int64_t nonzero = 0;
  for (int64_t i = 1; i < n; i += 2) nonzero += kept.at("exp").data[static_cast<size_t>(i)] > 0;
  CHECK(nonzero == n / 2);
  CHECK_FALSE(denormals_flushed());
#if defined(__x86_64__)
  // Workers compare controls only: a sticky flag (MXCSR bit 0, invalid) the
  // caller raised is the same mode; FTZ (bit 15) is not.
  const uint32_t mode = float_mode();
  CHECK(same_float_controls(mode, mode | 1u));
  CHECK_FALSE(same_float_controls(mode, mode ^ 0x8000u));
#endif
}

TEST_CASE("vector math: erf in f64 compiled code is libm's") {
  JitCase t(5, 8);
  NodeId x = t.input("x", {-1}, -1, 1, DType::f64);
  t.feeds["x"].data = {-2.0, -0.3, 0.0, 1e-3, 3.5};
  t.out("erf", t.op("erf", {x}));
  auto got = t.check(0);
  for (size_t i = 0; i < 5; ++i) CHECK(got.at("erf").data[i] == std::erf(t.feeds["x"].data[i]));
}
