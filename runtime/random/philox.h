#pragma once
// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC 2011): a counter-based generator. A draw is a pure function of a
// 128-bit counter and a 64-bit key, so a dropout mask bit or an augmentation
// choice depends only on (seed, step, what, element), never on which thread
// or in which order it was drawn. The compiled dropout kernels build the same
// rounds in loop IR (compiler/ops/random.cpp); this is the reference.
#include <array>
#include <cstdint>

namespace kiln::random {

using Counter = std::array<uint32_t, 4>;
using Key = std::array<uint32_t, 2>;

constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;
constexpr int kPhiloxRounds = 10;

constexpr Counter philox4x32(Counter c, Key k) {
  for (int r = 0; r < kPhiloxRounds; ++r) {
    if (r > 0) k = {k[0] + kPhiloxW0, k[1] + kPhiloxW1};
    const uint64_t p0 = uint64_t{kPhiloxM0} * c[0], p1 = uint64_t{kPhiloxM1} * c[2];
    c = {static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k[0], static_cast<uint32_t>(p1),
         static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k[1], static_cast<uint32_t>(p0)};
  }
  return c;
}

// The key of one stream: a graph's seed mixed with what draws (a node's name hash).
constexpr Key stream_key(uint64_t seed, uint64_t stream) {
  const uint64_t k = seed ^ (stream * 0x9E3779B97F4A7C15ull);
  return {static_cast<uint32_t>(k), static_cast<uint32_t>(k >> 32)};
}

// Element `index` of draw number `step` in a stream: uniform in [0, 1), 24 bits.
constexpr float uniform(Key key, uint64_t step, uint64_t index) {
  const Counter c = philox4x32({static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32),
                                static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32)}, key);
  return static_cast<float>(c[0] >> 8) * (1.0f / 16777216.0f);
}

// FNV-1a: a node name's stream number (stable across builds and hosts).
constexpr uint64_t name_hash(const char* s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; ++s) h = (h ^ static_cast<unsigned char>(*s)) * 0x100000001b3ull;
  return h;
}

}  // namespace kiln::random
