#include "compiler/ir/types.h"

namespace kiln {

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::boolean: return "bool";
  }
  return "?";
}

std::optional<DType> parse_dtype(std::string_view s) {
  if (s == "f32" || s == "float32") return DType::f32;
  if (s == "f64" || s == "float64") return DType::f64;
  if (s == "i32" || s == "int32") return DType::i32;
  if (s == "i64" || s == "int64") return DType::i64;
  if (s == "bool") return DType::boolean;
  return std::nullopt;
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: case DType::i32: return 4;
    case DType::f64: case DType::i64: return 8;
    case DType::boolean: return 1;
  }
  return 0;
}

std::string shape_str(const Shape& s) {
  auto dim = [&](size_t i) { return s[i] == kOpenDim ? std::string("?") : std::to_string(s[i]); };
  std::string out = "[";
  bool abbreviate = s.size() > static_cast<size_t>(kMaxRank);
  size_t head = abbreviate ? 8 : s.size();
  for (size_t i = 0; i < head; ++i) out += (i ? "," : "") + dim(i);
  if (!abbreviate) return out + "]";
  return out + ",...," + dim(s.size() - 1) + "] (" + std::to_string(s.size()) + " dimensions)";
}

bool has_open_dim(const Shape& s) {
  for (auto d : s) if (d == kOpenDim) return true;
  return false;
}

int64_t numel(const Shape& s, int64_t batch) {
  // Saturates instead of overflowing, so absurd shapes compare as absurd.
  int64_t n = 1;
  for (auto d : s)
    if (__builtin_mul_overflow(n, d == kOpenDim ? batch : d, &n)) return INT64_MAX;
  return n;
}

std::string type_str(const TensorType& t) {
  return std::string(dtype_name(t.dtype)) + shape_str(t.shape);
}

}  // namespace kiln
