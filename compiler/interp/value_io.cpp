#include "compiler/interp/value_io.h"

namespace kiln::interp {

DType to_dtype(ElemType t) {
  switch (t) {
    case ElemType::f32: return DType::f32;
    case ElemType::f64: return DType::f64;
    case ElemType::i32: case ElemType::u8: return DType::i32;
    case ElemType::i64: return DType::i64;
    case ElemType::boolean: return DType::boolean;
  }
  return DType::f32;
}

ElemType to_elem_type(DType t) { return static_cast<ElemType>(static_cast<uint8_t>(t)); }

template <class T>
static void copy_out(const Tensor& t, std::vector<double>& out) {
  for (T x : t.span<T>()) out.push_back(static_cast<double>(x));
}

Value to_value(const Tensor& t) {
  Value v{to_dtype(t.dtype()), t.shape(), {}};
  v.data.reserve(static_cast<size_t>(t.numel()));
  switch (t.dtype()) {
    case ElemType::f32: copy_out<float>(t, v.data); break;
    case ElemType::f64: copy_out<double>(t, v.data); break;
    case ElemType::i32: copy_out<int32_t>(t, v.data); break;
    case ElemType::i64: copy_out<int64_t>(t, v.data); break;
    case ElemType::u8: copy_out<uint8_t>(t, v.data); break;
    case ElemType::boolean: copy_out<bool>(t, v.data); break;
  }
  return v;
}

template <class T>
static void copy_in(const Value& v, Tensor& t) {
  auto out = t.span<T>();
  for (size_t i = 0; i < v.data.size(); ++i) out[i] = static_cast<T>(v.data[i]);
}

Tensor to_tensor(const Value& v) {
  Tensor t(to_elem_type(v.dtype), v.shape);
  switch (v.dtype) {
    case DType::f32: copy_in<float>(v, t); break;
    case DType::f64: copy_in<double>(v, t); break;
    case DType::i32: copy_in<int32_t>(v, t); break;
    case DType::i64: copy_in<int64_t>(v, t); break;
    case DType::boolean: copy_in<bool>(v, t); break;
  }
  return t;
}

}  // namespace kiln::interp
