#include "runtime/data/dataset.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "runtime/data/shuffle.h"

namespace kiln::data {

namespace {

size_t row_bytes(const Tensor& t) { return t.dim(0) ? t.nbytes() / static_cast<size_t>(t.dim(0)) : 0; }

Tensor gather_tensor(const Tensor& t, std::span<const int64_t> idx) {
  std::vector<int64_t> shape = t.shape();
  shape[0] = static_cast<int64_t>(idx.size());
  Tensor out(t.dtype(), shape);
  gather_rows(t.raw(), row_bytes(t), idx, out.raw());
  return out;
}

void check_k(const Dataset& d, int64_t k, const char* what) {
  if (k < 0 || k > d.size())
    throw std::invalid_argument(std::string(what) + ": asked for " + std::to_string(k) + " rows of a data set of " +
                                std::to_string(d.size()));
}

}  // namespace

Dataset Dataset::make(Tensor features, Tensor labels, RowDecode decode) {
  if (features.rank() < 1 || labels.rank() < 1 || features.dim(0) != labels.dim(0))
    throw std::invalid_argument("dataset: features " + shape_string(features.shape()) + " and labels " +
                                shape_string(labels.shape()) + " do not share a leading dimension N");
  return {std::move(features), std::move(labels), std::move(decode)};
}

// The stored bytes of rows [begin, begin + n) of d's features.
static const uint8_t* stored_rows(const Dataset& d, int64_t begin, int64_t n) {
  if (begin < 0 || n < 0 || begin + n > d.size())
    throw std::out_of_range("dataset: rows [" + std::to_string(begin) + ", " + std::to_string(begin + n) +
                            ") out of [0, " + std::to_string(d.size()) + ")");
  return static_cast<const uint8_t*>(d.features.raw()) + static_cast<size_t>(begin) * row_bytes(d.features);
}

Tensor Dataset::model_rows(int64_t begin, int64_t n) const {
  const uint8_t* from = stored_rows(*this, begin, n);
  std::vector<int64_t> shape = features.shape();
  shape[0] = n;
  Tensor rows(features.dtype(), shape);
  if (rows.nbytes()) std::memcpy(rows.raw(), from, rows.nbytes());
  return decode ? decode(rows) : rows;
}

const void* Dataset::model_rows_at(int64_t begin, int64_t n, Tensor& scratch) const {
  if (!decode) return stored_rows(*this, begin, n);
  scratch = model_rows(begin, n);
  return scratch.raw();
}

void gather_rows(const void* src, size_t row_bytes, std::span<const int64_t> idx, void* dst) {
  auto* s = static_cast<const uint8_t*>(src);
  auto* o = static_cast<uint8_t*>(dst);
  for (size_t i = 0; i < idx.size(); ++i) std::memcpy(o + i * row_bytes, s + idx[i] * row_bytes, row_bytes);
}

Dataset Dataset::gather(std::span<const int64_t> indices) const {
  for (int64_t i : indices)
    if (i < 0 || i >= size()) throw std::out_of_range("dataset: row " + std::to_string(i) + " out of [0, " + std::to_string(size()) + ")");
  return {gather_tensor(features, indices), gather_tensor(labels, indices), decode};
}

TrainValidation split_validation(const Dataset& d, int64_t k, uint64_t seed) {
  check_k(d, k, "split_validation");
  std::vector<int64_t> p = seeded_permutation(d.size(), seed);
  std::sort(p.begin(), p.begin() + k);
  std::sort(p.begin() + k, p.end());
  return {d.gather(std::span(p).subspan(k)), d.gather(std::span(p).first(k))};
}

Dataset subset_first(const Dataset& d, int64_t k) {
  check_k(d, k, "subset_first");
  std::vector<int64_t> idx(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) idx[i] = i;
  return d.gather(idx);
}

Dataset subset_random(const Dataset& d, int64_t k, uint64_t seed) {
  check_k(d, k, "subset_random");
  std::vector<int64_t> p = seeded_permutation(d.size(), seed);
  p.resize(static_cast<size_t>(k));
  std::sort(p.begin(), p.end());
  return d.gather(p);
}

}  // namespace kiln::data
