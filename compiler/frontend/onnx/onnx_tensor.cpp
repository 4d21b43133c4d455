// ONNX tensors and dtypes as kiln sees them: TensorProto -> interp::Value.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>

#include "compiler/frontend/onnx/convert.h"
#include "compiler/frontend/onnx/onnx_tensor.h"

namespace kiln::onnx {

void unsupported(const std::string& reason) { throw ConvertError("unsupported", reason); }
void invalid(const std::string& reason) { throw ConvertError("invalid", reason); }

std::string onnx_dtype_name(int32_t t) {
  using TP = ::onnx::TensorProto;
  if (TP::DataType_IsValid(t)) {
    std::string s = TP::DataType_Name(static_cast<TP::DataType>(t));
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  return "dtype " + std::to_string(t);
}

DType dtype_of_onnx(int32_t t) {
  using TP = ::onnx::TensorProto;
  switch (t) {
    case TP::FLOAT: return DType::f32;
    case TP::DOUBLE: return DType::f64;
    case TP::INT32: return DType::i32;
    case TP::INT64: return DType::i64;
    case TP::BOOL: return DType::boolean;
    default: unsupported("dtype " + onnx_dtype_name(t) + " (kiln has f32, f64, i32, i64, bool)");
  }
}

int32_t onnx_of_dtype(DType t) {
  using TP = ::onnx::TensorProto;
  switch (t) {
    case DType::f32: return TP::FLOAT;
    case DType::f64: return TP::DOUBLE;
    case DType::i32: return TP::INT32;
    case DType::i64: return TP::INT64;
    case DType::boolean: return TP::BOOL;
  }
  return TP::UNDEFINED;
}

namespace {

template <class T>
void append_raw(const std::string& raw, std::vector<double>& out, int64_t count, const std::string& what) {
  if (raw.size() != static_cast<size_t>(count) * sizeof(T))
    invalid(what + ": raw_data holds " + std::to_string(raw.size()) + " bytes, its shape needs " +
            std::to_string(count * static_cast<int64_t>(sizeof(T))));
  out.resize(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    T x;
    std::memcpy(&x, raw.data() + i * sizeof(T), sizeof(T));
    out[static_cast<size_t>(i)] = static_cast<double>(x);
  }
}

}  // namespace

interp::Value value_of_tensor(const ::onnx::TensorProto& t, const std::string& what) {
  using TP = ::onnx::TensorProto;
  if (t.data_location() == TP::EXTERNAL) unsupported(what + ": data in an external file");
  if (t.has_segment()) unsupported(what + ": segmented tensor");
  interp::Value v;
  v.dtype = dtype_of_onnx(t.data_type());
  int64_t count = 1;
  for (int64_t d : t.dims()) {
    if (d < 0) invalid(what + ": negative dimension " + std::to_string(d));
    v.shape.push_back(d);
    if (d != 0 && count > (int64_t{1} << 40) / d) invalid(what + ": too many elements");
    count *= d;
  }
  if (t.has_raw_data()) {
    const std::string& raw = t.raw_data();
    switch (t.data_type()) {
      case TP::FLOAT: append_raw<float>(raw, v.data, count, what); break;
      case TP::DOUBLE: append_raw<double>(raw, v.data, count, what); break;
      case TP::INT32: append_raw<int32_t>(raw, v.data, count, what); break;
      case TP::INT64: append_raw<int64_t>(raw, v.data, count, what); break;
      case TP::BOOL: append_raw<uint8_t>(raw, v.data, count, what); break;
    }
  } else {
    auto take = [&](const auto& field, const char* name) {
      if (field.size() != count)
        invalid(what + ": " + name + " holds " + std::to_string(field.size()) + " values, its shape needs " +
                std::to_string(count));
      v.data.assign(field.begin(), field.end());
    };
    switch (t.data_type()) {
      case TP::FLOAT: take(t.float_data(), "float_data"); break;
      case TP::DOUBLE: take(t.double_data(), "double_data"); break;
      case TP::INT32: case TP::BOOL: take(t.int32_data(), "int32_data"); break;
      case TP::INT64: take(t.int64_data(), "int64_data"); break;
    }
  }
  if (v.dtype == DType::boolean)
    for (double& x : v.data) x = x != 0 ? 1 : 0;
  return v;
}

interp::Value read_tensor_file(const std::string& path, std::string* name) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  ::onnx::TensorProto t;
  if (!t.ParseFromString(ss.str())) throw std::runtime_error(path + ": not an ONNX TensorProto (or truncated)");
  if (name) *name = t.name();
  try {
    return value_of_tensor(t, path);
  } catch (const ConvertError& e) {
    throw std::runtime_error(e.what());
  }
}

nlohmann::json ints_json(const std::vector<int64_t>& v) {
  nlohmann::json a = nlohmann::json::array();
  for (int64_t x : v) a.push_back(x);
  return a;
}

std::vector<int64_t> value_ints(const interp::Value& v) {
  std::vector<int64_t> out;
  out.reserve(v.data.size());
  // Values are held as doubles: INT64_MAX (ONNX's "to the end") reads back
  // as 2^63, out of int64's range, so the ends are clamped.
  for (double x : v.data) {
    if (std::isnan(x)) invalid("NaN where an integer is expected");
    out.push_back(x >= 9.2233720368547758e18 ? INT64_MAX : x <= -9.2233720368547758e18 ? INT64_MIN : static_cast<int64_t>(x));
  }
  return out;
}

}  // namespace kiln::onnx
