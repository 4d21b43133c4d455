#include "runtime/tensor.h"

#include <cstdlib>
#include <cstring>

namespace kiln {

size_t elem_size(ElemType t) {
  switch (t) {
    case ElemType::f32: case ElemType::i32: return 4;
    case ElemType::f64: case ElemType::i64: return 8;
    case ElemType::u8: case ElemType::boolean: return 1;
  }
  throw std::logic_error("elem_size: unknown dtype");
}

const char* elem_type_name(ElemType t) {
  switch (t) {
    case ElemType::f32: return "f32";
    case ElemType::f64: return "f64";
    case ElemType::i32: return "i32";
    case ElemType::i64: return "i64";
    case ElemType::u8: return "u8";
    case ElemType::boolean: return "bool";
  }
  return "?";
}

std::optional<ElemType> elem_type_from_name(std::string_view name) {
  for (ElemType t : {ElemType::f32, ElemType::f64, ElemType::i32, ElemType::i64, ElemType::u8, ElemType::boolean})
    if (name == elem_type_name(t)) return t;
  return std::nullopt;
}

int64_t shape_numel(std::span<const int64_t> shape, size_t elem_size) {
  constexpr int64_t kLimit = int64_t{1} << 62;
  // The product of the non-zero dimensions must fit even when a zero empties
  // the shape: the answer then does not depend on where the zero sits
  // ([0, 4e9, 4e9] and [4e9, 4e9, 0] alike), and whatever multiplies some of
  // the dimensions (an item's size in a batch of 0) cannot overflow.
  int64_t n = 1;
  bool empty = false;
  for (int64_t d : shape) {
    if (d < 0) throw std::invalid_argument("negative dimension in shape " + shape_string(shape));
    if (d == 0) {
      empty = true;
      continue;
    }
    if (n > kLimit / d) throw std::invalid_argument("shape " + shape_string(shape) + " is too large");
    n *= d;
  }
  if (elem_size > 1 && n > kLimit / static_cast<int64_t>(elem_size))
    throw std::invalid_argument("shape " + shape_string(shape) + " is too large");
  return empty ? 0 : n;
}

std::string shape_string(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void Tensor::Free::operator()(void* p) const noexcept { std::free(p); }

Tensor::Tensor(ElemType dtype, std::vector<int64_t> shape)
    : dtype_(dtype), shape_(std::move(shape)), numel_(shape_numel(shape_, elem_size(dtype))) {
  // aligned_alloc needs a size that is a multiple of the alignment, and we
  // never hand out a null pointer (even for zero elements).
  size_t bytes = (nbytes() + 63) / 64 * 64;
  if (bytes == 0) bytes = 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  data_.reset(p);
}

Tensor::Tensor(const Tensor& other) : Tensor() { *this = other; }

Tensor& Tensor::operator=(const Tensor& other) {
  if (this == &other) return *this;
  if (!other.data_) {
    *this = Tensor();
    return *this;
  }
  Tensor t(other.dtype_, other.shape_);
  std::memcpy(t.raw(), other.raw(), other.nbytes());
  return *this = std::move(t);
}

void Tensor::reshape(std::vector<int64_t> shape) {
  if (shape_numel(shape) != numel_)
    throw std::invalid_argument("cannot reshape " + shape_string(shape_) + " to " + shape_string(shape));
  shape_ = std::move(shape);
}

bool Tensor::bit_equal(const Tensor& other) const {
  return dtype_ == other.dtype_ && shape_ == other.shape_ &&
         (nbytes() == 0 || std::memcmp(raw(), other.raw(), nbytes()) == 0);
}

void Tensor::check_type(ElemType want) const {
  if (want != dtype_)
    throw std::logic_error(std::string("tensor holds ") + elem_type_name(dtype_) + ", not " + elem_type_name(want));
}

}  // namespace kiln
