#include "runtime/init/initializers.h"

#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace kiln::init {

Fans fans_of(const std::vector<int64_t>& shape) {
  Fans f;
  if (shape.size() < 2) {
    double n = 1;
    for (int64_t d : shape) n *= static_cast<double>(d);
    f.fan_in = f.fan_out = n;
    return f;
  }
  // Keras' convention: the leading dims form the receptive field.
  double receptive = 1;
  for (size_t i = 0; i + 2 < shape.size(); ++i) receptive *= static_cast<double>(shape[i]);
  f.fan_in = receptive * static_cast<double>(shape[shape.size() - 2]);
  f.fan_out = receptive * static_cast<double>(shape[shape.size() - 1]);
  return f;
}

double SeededRandom::uniform01() {
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

double SeededRandom::normal() {
  if (have_spare_) {
    have_spare_ = false;
    return spare_;
  }
  double u1 = 1.0 - uniform01();  // (0, 1]: log never sees 0
  double u2 = uniform01();
  double r = std::sqrt(-2.0 * std::log(u1));
  double theta = 2.0 * std::numbers::pi * u2;
  spare_ = r * std::sin(theta);
  have_spare_ = true;
  return r * std::cos(theta);
}

static double number(const nlohmann::json& spec, const char* key, double fallback, bool required = false) {
  auto it = spec.find(key);
  if (it == spec.end()) {
    if (required) throw std::invalid_argument("initializer '" + spec.value("kind", std::string("?")) +
                                              "' needs a \"" + key + "\" number");
    return fallback;
  }
  if (!it->is_number() || !std::isfinite(it->get<double>()))
    throw std::invalid_argument(std::string("initializer parameter \"") + key + "\" must be a finite number, got " +
                                it->dump());
  return it->get<double>();
}

std::vector<double> draw_initial_values(const nlohmann::json& spec, const std::vector<int64_t>& shape) {
  if (!spec.is_object() || !spec.contains("kind") || !spec["kind"].is_string())
    throw std::invalid_argument("an initializer spec is an object with a \"kind\" string, got " + spec.dump());
  const std::string kind = spec["kind"];
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 1) throw std::invalid_argument("cannot initialize a tensor of shape with dimension " + std::to_string(d));
    count *= d;
  }
  uint64_t seed = 0;
  if (spec.contains("seed")) {
    const auto& s = spec["seed"];
    if (!s.is_number_integer() || (!s.is_number_unsigned() && s.get<int64_t>() < 0))
      throw std::invalid_argument("initializer seed must be a non-negative integer, got " + s.dump());
    seed = s.get<uint64_t>();
  }
  std::vector<double> out(static_cast<size_t>(count));
  SeededRandom rng(seed);
  Fans fans = fans_of(shape);
  auto fill_normal = [&](double mean, double stddev) {
    for (double& v : out) v = mean + stddev * rng.normal();
  };
  auto fill_uniform = [&](double lo, double hi) {
    for (double& v : out) v = lo + (hi - lo) * rng.uniform01();
  };
  if (kind == "zeros") {
    // already zero
  } else if (kind == "ones") {
    for (double& v : out) v = 1.0;
  } else if (kind == "constant") {
    double c = number(spec, "value", 0, true);
    for (double& v : out) v = c;
  } else if (kind == "normal") {
    double stddev = number(spec, "stddev", 1.0);
    if (stddev < 0) throw std::invalid_argument("normal initializer: stddev must be >= 0");
    fill_normal(number(spec, "mean", 0.0), stddev);
  } else if (kind == "uniform") {
    double lo = number(spec, "min", -0.05), hi = number(spec, "max", 0.05);
    if (hi < lo) throw std::invalid_argument("uniform initializer: min " + std::to_string(lo) + " > max " + std::to_string(hi));
    fill_uniform(lo, hi);
  } else if (kind == "he_normal") {
    fill_normal(0.0, std::sqrt(2.0 / fans.fan_in));
  } else if (kind == "glorot_uniform") {
    double limit = std::sqrt(6.0 / (fans.fan_in + fans.fan_out));
    fill_uniform(-limit, limit);
  } else {
    throw std::invalid_argument("unknown initializer '" + kind +
                                "' (known: zeros, ones, constant, normal, uniform, he_normal, glorot_uniform)");
  }
  return out;
}

uint64_t param_seed(uint64_t graph_seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  uint64_t z = h ^ (graph_seed + 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return (z ^ (z >> 31)) & ((1ull << 53) - 1);
}

}  // namespace kiln::init
