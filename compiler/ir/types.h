#pragma once
// Scalar types and static tensor types shared by every stage of kiln.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

// DESIGN.md conventions: f32 for reals, i32 for labels/indices, bool for masks,
// i64 for the step counter; f64 exists so the interpreter can promote for gradchecks.
enum class DType : uint8_t { f32, f64, i32, i64, boolean };

std::string_view dtype_name(DType t);
std::optional<DType> parse_dtype(std::string_view s);
size_t dtype_size(DType t);
inline bool is_float(DType t) { return t == DType::f32 || t == DType::f64; }

// A dimension of -1 is the open (batch) dimension, bound at run time.
constexpr int64_t kOpenDim = -1;
using Shape = std::vector<int64_t>;
// No model needs more dimensions; a shape with more is a malformed input
// (it would cost time and memory linear in its rank at every stage).
constexpr int kMaxRank = 16;

// "[?,3072]"; a shape over kMaxRank dimensions is abbreviated with its rank.
std::string shape_str(const Shape& s);
bool has_open_dim(const Shape& s);
// Element count with the open dimension bound to `batch`.
int64_t numel(const Shape& s, int64_t batch = 1);

struct TensorType {
  DType dtype = DType::f32;
  Shape shape;
  int rank() const { return static_cast<int>(shape.size()); }
  bool operator==(const TensorType&) const = default;
};
std::string type_str(const TensorType& t);      // "f32[?,3072]"

}  // namespace kiln
