#include "runtime/data/shuffle.h"

#include <numeric>
#include <sstream>
#include <stdexcept>

namespace kiln::data {

uint64_t uniform_below(std::mt19937_64& rng, uint64_t bound) {
  if (bound == 0) throw std::invalid_argument("uniform_below: bound 0");
  const uint64_t threshold = (0 - bound) % bound;  // (2^64 - bound) mod bound
  while (true) {
    uint64_t r = rng();
    if (r >= threshold) return r % bound;
  }
}

void fisher_yates(std::span<int64_t> v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i-- > 1;) {
    size_t j = static_cast<size_t>(uniform_below(rng, i + 1));
    std::swap(v[i], v[j]);
  }
}

std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  std::mt19937_64 rng(seed);
  fisher_yates(p, rng);
  return p;
}

std::string rng_state(const std::mt19937_64& rng) {
  std::ostringstream os;
  os << rng;
  return os.str();
}

std::mt19937_64 parse_rng_state(const std::string& state) {
  std::istringstream is(state);
  std::mt19937_64 rng;
  is >> rng;
  if (is.fail()) throw std::invalid_argument("malformed random-generator state (" + std::to_string(state.size()) + " bytes)");
  is >> std::ws;
  if (!is.eof()) throw std::invalid_argument("malformed random-generator state: trailing text");
  return rng;
}

}  // namespace kiln::data
