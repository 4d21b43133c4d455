#pragma once
// Where a Batcher stands, for exact resume (saved in checkpoints): restoring
// it makes the batcher yield the identical batch sequence from there on.
#include <cstdint>
#include <string>

namespace kiln::data {

struct BatchPosition {
  int64_t epoch = 0;       // epoch of the next batch (0-based)
  int64_t next_batch = 0;  // index within that epoch of the next batch
  // std::mt19937_64 state (standard text form) *before* this epoch's shuffle
  // was drawn; empty when the batcher does not shuffle.
  std::string rng_state;

  bool operator==(const BatchPosition&) const = default;
};

}  // namespace kiln::data
