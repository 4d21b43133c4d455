#pragma once
// Seeded randomness for data order, defined here rather than by the standard
// library: std::uniform_int_distribution and std::shuffle are implementation-
// defined, so the same seed could give different orders with another
// toolchain. std::mt19937_64 itself is fully specified by the standard.
//
//  uniform_below(rng, b): draw r = rng() until r >= (2^64 - b) mod b, return
//    r mod b. (Rejection sampling: exactly uniform on [0, b).)
//  fisher_yates(v, rng): for i = n-1 down to 1: j = uniform_below(rng, i+1);
//    swap(v[i], v[j]).
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace kiln::data {

uint64_t uniform_below(std::mt19937_64& rng, uint64_t bound);
void fisher_yates(std::span<int64_t> v, std::mt19937_64& rng);
// 0..n-1 shuffled by fisher_yates with a fresh std::mt19937_64(seed).
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed);

// The engine's full state as the standard's text form (operator<<), and back.
// parse_rng_state throws std::invalid_argument on malformed text.
std::string rng_state(const std::mt19937_64& rng);
std::mt19937_64 parse_rng_state(const std::string& state);

}  // namespace kiln::data
