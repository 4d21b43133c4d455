#pragma once
// kiln::Tensor: a small owned n-d array for the runtime (data sets, batches,
// checkpoints, .npy files). The compiler has its own IR types and never uses
// this. Storage is one 64-byte aligned block (SIMD loads, and the compiled
// programs' arena alignment), C order, no strides: a Tensor is always dense.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

// Numbered like the compiler's DType (f32, f64, i32, i64, bool) so the two convert by value; u8 is data-only.
enum class ElemType : uint8_t { f32 = 0, f64 = 1, i32 = 2, i64 = 3, boolean = 4, u8 = 5 };

size_t elem_size(ElemType t);
// "f32", "f64", "i32", "i64", "u8", "bool": the names the graph format uses.
const char* elem_type_name(ElemType t);
std::optional<ElemType> elem_type_from_name(std::string_view name);

template <class T> struct elem_type_of;
template <> struct elem_type_of<float> { static constexpr ElemType value = ElemType::f32; };
template <> struct elem_type_of<double> { static constexpr ElemType value = ElemType::f64; };
template <> struct elem_type_of<int32_t> { static constexpr ElemType value = ElemType::i32; };
template <> struct elem_type_of<int64_t> { static constexpr ElemType value = ElemType::i64; };
template <> struct elem_type_of<uint8_t> { static constexpr ElemType value = ElemType::u8; };
template <> struct elem_type_of<bool> { static constexpr ElemType value = ElemType::boolean; };

// Number of elements of a shape; throws std::invalid_argument on a negative
// dimension or when the product of the non-zero dimensions times elem_size
// overflows 2^62 bytes (even when a zero dimension makes the count 0).
int64_t shape_numel(std::span<const int64_t> shape, size_t elem_size = 1);
std::string shape_string(std::span<const int64_t> shape);  // "[60000, 28, 28, 1]"

class Tensor {
 public:
  Tensor() = default;
  // Zero-filled tensor of the given dtype and shape (an empty shape is a scalar).
  Tensor(ElemType dtype, std::vector<int64_t> shape);
  Tensor(const Tensor& other);  // deep copy
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  ElemType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_.at(static_cast<size_t>(i)); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * elem_size(dtype_); }
  bool empty() const { return numel_ == 0; }

  void* raw() { return data_.get(); }
  const void* raw() const { return data_.get(); }
  std::span<std::byte> bytes() { return {static_cast<std::byte*>(raw()), nbytes()}; }
  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(raw()), nbytes()}; }

  // Typed views; throw std::logic_error when T does not match the dtype.
  template <class T> T* data() { check_type(elem_type_of<T>::value); return static_cast<T*>(raw()); }
  template <class T> const T* data() const { check_type(elem_type_of<T>::value); return static_cast<const T*>(raw()); }
  template <class T> std::span<T> span() { return {data<T>(), static_cast<size_t>(numel_)}; }
  template <class T> std::span<const T> span() const { return {data<T>(), static_cast<size_t>(numel_)}; }

  // Same elements, new shape (same element count); throws std::invalid_argument.
  void reshape(std::vector<int64_t> shape);
  // Same dtype, shape and bytes.
  bool bit_equal(const Tensor& other) const;

 private:
  void check_type(ElemType want) const;
  struct Free { void operator()(void* p) const noexcept; };
  ElemType dtype_ = ElemType::f32;
  std::vector<int64_t> shape_;
  int64_t numel_ = 0;
  std::unique_ptr<void, Free> data_;
};

}  // namespace kiln
