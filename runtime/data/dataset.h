#pragma once
// An in-memory data set: features [N, ...] and labels [N] (i32 class ids) or
// [N, K] (f32 one-hot or targets), row i of each belonging together; plus
// the seeded ways to cut it (validation split, subsets).
#include <cstdint>
#include <functional>
#include <span>

#include "runtime/tensor.h"

namespace kiln::data {

// Stored rows [n, ...] -> the rows the model reads (images scaled and normalized to f32).
using RowDecode = std::function<Tensor(const Tensor& stored_rows)>;

struct Dataset {
  Tensor features;  // what the model reads (usually f32 [N, ...]), or stored rows `decode` turns into it
  Tensor labels;    // i32 [N] or f32 [N, K]
  // Set for images kept as bytes: CIFAR-10's training set is 153 MB as u8
  // and 614 MB as f32. Each batch is decoded as it is gathered, element by
  // element as decoding the whole set would, so the values are the same bits.
  RowDecode decode;

  // Checks both have a leading dimension N and agree on it.
  static Dataset make(Tensor features, Tensor labels, RowDecode decode = {});
  int64_t size() const { return features.rank() ? features.dim(0) : 0; }
  // The rows at `indices`, in that order (each index in [0, N)); stored rows, the same decode.
  Dataset gather(std::span<const int64_t> indices) const;
  // Rows [begin, begin + n) as the model reads them (decoded).
  Tensor model_rows(int64_t begin, int64_t n) const;
  // The same rows for a program's input: a pointer into the features, or
  // (stored bytes) to the rows decoded into `scratch`.
  const void* model_rows_at(int64_t begin, int64_t n, Tensor& scratch) const;
  // For checks of type and row shape: the features themselves, or (stored
  // bytes) the first row decoded into `scratch`. Never a copy of the whole set.
  const Tensor& model_sample(Tensor& scratch) const {
    if (!decode) return features;
    return scratch = model_rows(0, size() ? 1 : 0);
  }
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
