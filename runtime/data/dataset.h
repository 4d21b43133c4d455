#pragma once
// An in-memory data set: features [N, ...] and labels [N] (i32 class ids) or
// [N, K] (f32 one-hot or targets), row i of each belonging together; plus
// the seeded ways to cut it (validation split, subsets).
#include <cstdint>
#include <span>

#include "runtime/tensor.h"

namespace kiln::data {

struct Dataset {
  Tensor features;  // usually f32 [N, ...]
  Tensor labels;    // i32 [N] or f32 [N, K]

  // Checks both have a leading dimension N and agree on it.
  static Dataset make(Tensor features, Tensor labels);
  int64_t size() const { return features.rank() ? features.dim(0) : 0; }
  // The rows at `indices`, in that order (each index in [0, N)).
  Dataset gather(std::span<const int64_t> indices) const;
};

struct TrainValidation {
  Dataset train, validation;
};

// A seeded random `k` of the N rows is the validation set, the rest train:
// the first k entries of seeded_permutation(N, seed) are validation. Both
// parts keep the original row order (sorted indices).
TrainValidation split_validation(const Dataset& d, int64_t k, uint64_t seed);

// The first k rows (quick runs that must match a fixed prefix).
Dataset subset_first(const Dataset& d, int64_t k);
// A seeded random k rows (the first k of seeded_permutation(N, seed)), kept in
// original row order.
Dataset subset_random(const Dataset& d, int64_t k, uint64_t seed);

// Copies rows idx[0..n) of src (rows of row_bytes) to dst, contiguous.
void gather_rows(const void* src, size_t row_bytes, std::span<const int64_t> idx, void* dst);

}  // namespace kiln::data
