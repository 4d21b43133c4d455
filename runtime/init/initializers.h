#pragma once
// Initial values of params, drawn from an initializer spec. Lives in the
// runtime so the trainer and the reference interpreter draw the very same
// numbers from the same seed (no dependency on the compiler).
//
// A spec is the normalized object the frontend writes into a param's attrs:
//   {"kind": "zeros" | "ones" | "constant" | "normal" | "uniform" | "he_normal" | "glorot_uniform",
//    parameters..., "seed": N}
// Kinds and their parameters:
//   zeros, ones            -
//   constant               value
//   normal                 mean (0), stddev (1)
//   uniform                min (-0.05), max (0.05)      U[min, max)
//   he_normal              N(0, sqrt(2 / fan_in)), NOT truncated (the seed's MSRA init;
//                          Keras' he_normal truncates at 2 stddev, this one does not)
//   glorot_uniform         U(-l, l), l = sqrt(6 / (fan_in + fan_out))
//
// Reproducible on any platform: std::mt19937_64 seeded with the spec's seed,
// uniforms built from its top 53 bits and normals by Box-Muller; no std::
// distributions (their algorithms differ between standard libraries).
#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace kiln::init {

// fan_in / fan_out of a param shape: [in, out] matrices -> in, out; conv
// kernels [kh, kw, c, f] -> kh*kw*c, kh*kw*f (in general the product of the
// leading dims times the last two); vectors and scalars -> their size for both.
struct Fans {
  double fan_in = 1, fan_out = 1;
};
Fans fans_of(const std::vector<int64_t>& shape);

// A seeded source of uniform and normal doubles, identical on every platform.
class SeededRandom {
 public:
  explicit SeededRandom(uint64_t seed) : engine_(seed) {}
  double uniform01();                 // [0, 1), 53 random bits
  double normal();                    // N(0, 1), Box-Muller (pairs, the second cached)
 private:
  std::mt19937_64 engine_;
  bool have_spare_ = false;
  double spare_ = 0;
};

// A per-param seed derived from a graph seed (the spec's "seed") and the param
// name: FNV-1a over the name, mixed by splitmix64, 53 bits (exact in JSON).
// Here so that an AOT program draws the same values as `kiln train`.
uint64_t param_seed(uint64_t graph_seed, const std::string& param_name);

// Draws prod(shape) values (row-major) for `spec`. Throws std::invalid_argument
// saying what is wrong with the spec (unknown kind, missing parameter, bad range).
std::vector<double> draw_initial_values(const nlohmann::json& spec, const std::vector<int64_t>& shape);

}  // namespace kiln::init
