// Initializers (runtime/init): every kind's statistics against its formula,
// fans, reproducibility from the seed, and init_params over a whole graph.
#include <doctest/doctest.h>

#include <cmath>
#include <numbers>
#include <random>

#include "compiler/frontend/graph_json.h"
#include "compiler/interp/interpreter.h"
#include "runtime/init/initializers.h"

using namespace kiln;
using nlohmann::json;

namespace {

struct Moments {
  double mean = 0, var = 0, min = 1e300, max = -1e300;
};

Moments moments(const std::vector<double>& v) {
  Moments m;
  for (double x : v) m.mean += x, m.min = std::min(m.min, x), m.max = std::max(m.max, x);
  m.mean /= static_cast<double>(v.size());
  for (double x : v) m.var += (x - m.mean) * (x - m.mean);
  m.var /= static_cast<double>(v.size());
  return m;
}

}  // namespace

TEST_CASE("init fans of matrices and conv kernels and vectors and scalars") {
  auto f = init::fans_of({3072, 1024});
  CHECK(f.fan_in == 3072);
  CHECK(f.fan_out == 1024);
  f = init::fans_of({3, 3, 32, 64});
  CHECK(f.fan_in == 3 * 3 * 32);
  CHECK(f.fan_out == 3 * 3 * 64);
  f = init::fans_of({10});
  CHECK(f.fan_in == 10);
  CHECK(f.fan_out == 10);
  f = init::fans_of({});
  CHECK(f.fan_in == 1);
  CHECK(f.fan_out == 1);
}

TEST_CASE("init he_normal on a 3072x1024 matrix has mean 0 and variance 2/fan_in - untruncated") {
  auto v = init::draw_initial_values({{"kind", "he_normal"}, {"seed", 7}}, {3072, 1024});
  REQUIRE(v.size() == 3072u * 1024u);
  Moments m = moments(v);
  double sd = std::sqrt(2.0 / 3072);
  // standard errors: mean sd/sqrt(n) = 1.4e-5, variance var*sqrt(2/n) = 0.08%
  CHECK(std::abs(m.mean) < 1e-4);
  CHECK(m.var == doctest::Approx(sd * sd).epsilon(0.005));
  // Not truncated at 2 sd: a normal puts 4.55% of its mass beyond (about 143,000 of 3.1M draws).
  size_t beyond = 0;
  for (double x : v) beyond += std::abs(x) > 2 * sd;
  CHECK(static_cast<double>(beyond) / static_cast<double>(v.size()) == doctest::Approx(0.0455).epsilon(0.02));
  CHECK(m.max > 4.5 * sd);
}

TEST_CASE("init glorot_uniform on a 3072x1024 matrix: inside +-l - variance l^2/3") {
  auto v = init::draw_initial_values({{"kind", "glorot_uniform"}, {"seed", 3}}, {3072, 1024});
  double l = std::sqrt(6.0 / (3072 + 1024));
  Moments m = moments(v);
  CHECK(m.min >= -l);
  CHECK(m.max <= l);
  CHECK(m.max > 0.999 * l);
  CHECK(m.min < -0.999 * l);
  CHECK(std::abs(m.mean) < 1e-4);
  CHECK(m.var == doctest::Approx(l * l / 3).epsilon(0.005));
}

TEST_CASE("init glorot_uniform on a conv kernel uses receptive-field fans") {
  auto v = init::draw_initial_values({{"kind", "glorot_uniform"}, {"seed", 11}}, {3, 3, 32, 64});
  double l = std::sqrt(6.0 / (3 * 3 * 32 + 3 * 3 * 64));
  Moments m = moments(v);
  CHECK(m.max <= l);
  CHECK(m.min >= -l);
  CHECK(m.var == doctest::Approx(l * l / 3).epsilon(0.05));  // 18,432 draws: se of var 1.6%
}

TEST_CASE("init normal and uniform with parameters plus zeros and ones and constant") {
  auto n = moments(init::draw_initial_values({{"kind", "normal"}, {"mean", 3.0}, {"stddev", 0.5}, {"seed", 1}}, {200000}));
  CHECK(n.mean == doctest::Approx(3.0).epsilon(0.001));
  CHECK(n.var == doctest::Approx(0.25).epsilon(0.02));
  auto u = moments(init::draw_initial_values({{"kind", "uniform"}, {"min", 2.0}, {"max", 5.0}, {"seed", 1}}, {200000}));
  CHECK(u.min >= 2.0);
  CHECK(u.max < 5.0);
  CHECK(u.mean == doctest::Approx(3.5).epsilon(0.002));
  CHECK(u.var == doctest::Approx(9.0 / 12).epsilon(0.02));
  CHECK(init::draw_initial_values({{"kind", "zeros"}}, {2, 2}) == std::vector<double>(4, 0.0));
  CHECK(init::draw_initial_values({{"kind", "ones"}}, {3}) == std::vector<double>(3, 1.0));
  CHECK(init::draw_initial_values({{"kind", "constant"}, {"value", -0.25}}, {2}) == std::vector<double>(2, -0.25));
}

TEST_CASE("init is reproducible from the seed - different seeds differ") {
  json a = {{"kind", "he_normal"}, {"seed", 42}}, b = {{"kind", "he_normal"}, {"seed", 43}};
  auto x1 = init::draw_initial_values(a, {64, 32}), x2 = init::draw_initial_values(a, {64, 32});
  auto y = init::draw_initial_values(b, {64, 32});
  CHECK(x1 == x2);
  size_t same = 0;
  for (size_t i = 0; i < x1.size(); ++i) same += x1[i] == y[i];
  CHECK(same == 0);
}

TEST_CASE("init uniforms are the top 53 bits of mt19937_64 - normals come in Box-Muller pairs") {
  std::mt19937_64 engine(2024);
  uint64_t r1 = engine(), r2 = engine();
  init::SeededRandom rng(2024);
  double u1 = static_cast<double>(r1 >> 11) / 9007199254740992.0;  // 2^53
  double u2 = static_cast<double>(r2 >> 11) / 9007199254740992.0;
  CHECK(rng.uniform01() == u1);
  CHECK(rng.uniform01() == u2);
  init::SeededRandom g(2024);
  double radius = std::sqrt(-2 * std::log(1 - u1)), angle = 2 * std::numbers::pi * u2;
  CHECK(g.normal() == doctest::Approx(radius * std::cos(angle)).epsilon(1e-15));
  CHECK(g.normal() == doctest::Approx(radius * std::sin(angle)).epsilon(1e-15));
}

TEST_CASE("init rejects a bad spec with a message that says what is wrong") {
  CHECK_THROWS_WITH(init::draw_initial_values({{"kind", "he_uniform"}}, {2}), doctest::Contains("unknown initializer 'he_uniform'"));
  CHECK_THROWS_WITH(init::draw_initial_values({{"kind", "constant"}}, {2}), doctest::Contains("needs a \"value\""));
  CHECK_THROWS_WITH(init::draw_initial_values({{"kind", "uniform"}, {"min", 1.0}, {"max", 0.0}}, {2}),
                    doctest::Contains("min"));
}

TEST_CASE("init_params draws every param of the MLP graph from its own seed - rounded to f32") {
  Graph g = load_graph(KILN_SOURCE_DIR "/graphs/mlp_cifar10.json");
  auto p = interp::init_params(g);
  REQUIRE(p.size() == 4);
  CHECK(p.at("w1").shape == Shape{3072, 1024});
  CHECK(p.at("b1").data == std::vector<double>(1024, 0.0));
  const auto& w2 = p.at("w2").data;
  for (double x : w2) CHECK(x == static_cast<double>(static_cast<float>(x)));
  CHECK(moments(w2).var == doctest::Approx(2.0 / 1024).epsilon(0.1));  // 10,240 draws
  // The values come from the param's own init spec.
  auto direct = init::draw_initial_values(g.node(g.find("w2")).attrs.at("init"), {1024, 10});
  CHECK(w2[0] == static_cast<double>(static_cast<float>(direct[0])));
  CHECK(interp::init_params(g).at("w2").data == w2);
  // A new graph seed re-derives every param's seed: new, reproducible values.
  auto reseeded = interp::init_params(g, 99);
  CHECK(reseeded.at("w2").data != w2);
  CHECK(interp::init_params(g, 99).at("w2").data == reseeded.at("w2").data);
}
