#include "runtime/data/npy.h"

#include <cctype>
#include <cstring>

#include "runtime/file_io.h"

namespace kiln::data {

namespace {

constexpr char kMagic[] = "\x93NUMPY";  // 6 bytes

const char* descr_of(ElemType t) {
  switch (t) {
    case ElemType::f32: return "<f4";
    case ElemType::f64: return "<f8";
    case ElemType::i32: return "<i4";
    case ElemType::i64: return "<i8";
    case ElemType::u8: return "|u1";
    case ElemType::boolean: return "|b1";
  }
  return "?";
}

// The header is a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// We parse just that grammar: string keys, and string / bool / int-tuple values.
class HeaderParser {
 public:
  HeaderParser(std::string_view s, const std::string& name) : s_(s), name_(name) {}

  void parse(std::string& descr, bool& fortran, std::vector<int64_t>& shape) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') break;
      std::string key = string_lit();
      expect(':');
      skip_ws();
      if (key == "descr") {
        descr = string_lit();
        have_descr = true;
      } else if (key == "fortran_order") {
        fortran = bool_lit();
        have_fortran = true;
      } else if (key == "shape") {
        shape = tuple_lit();
        have_shape = true;
      } else {
        fail("unknown header key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',') ++pos_;
    }
    if (!have_descr || !have_fortran || !have_shape)
      fail("header lacks one of 'descr', 'fortran_order', 'shape'");
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    fail_file(name_, "bad .npy header: " + what + " (header: " + std::string(s_) + ")");
  }
  char peek() { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) fail(std::string("expected '") + c + "' at offset " + std::to_string(pos_));
    ++pos_;
  }
  std::string string_lit() {
    skip_ws();
    char q = peek();
    if (q != '\'' && q != '"') fail("expected a string at offset " + std::to_string(pos_));
    size_t end = s_.find(q, pos_ + 1);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string out(s_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return out;
  }
  bool bool_lit() {
    if (s_.substr(pos_, 4) == "True") { pos_ += 4; return true; }
    if (s_.substr(pos_, 5) == "False") { pos_ += 5; return false; }
    fail("expected True or False for 'fortran_order'");
  }
  std::vector<int64_t> tuple_lit() {
    std::vector<int64_t> dims;
    expect('(');
    while (true) {
      skip_ws();
      if (peek() == ')') { ++pos_; break; }
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("bad dimension in 'shape'");
      int64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        if (v > (int64_t{1} << 50)) fail("dimension too large in 'shape'");
        v = v * 10 + (s_[pos_++] - '0');
      }
      if (peek() == 'L') ++pos_;  // Python 2 long suffix
      dims.push_back(v);
      skip_ws();
      if (peek() == ',') ++pos_;
    }
    return dims;
  }

  std::string_view s_;
  const std::string& name_;
  size_t pos_ = 0;
};

ElemType dtype_from_descr(const std::string& descr, const std::string& name) {
  for (ElemType t : {ElemType::f32, ElemType::f64, ElemType::i32, ElemType::i64, ElemType::u8, ElemType::boolean})
    if (descr == descr_of(t)) return t;
  // Single-byte types may be written with any byte-order mark.
  if (descr == "<u1" || descr == "=u1") return ElemType::u8;
  if (descr == "<b1" || descr == "=b1") return ElemType::boolean;
  if (!descr.empty() && descr[0] == '>')
    fail_file(name, "unsupported .npy dtype '" + descr + "': big-endian data is not supported");
  fail_file(name, "unsupported .npy dtype '" + descr +
                      "' (supported: <f4 <f8 <i4 <i8 |u1 |b1, i.e. f32 f64 i32 i64 u8 bool)");
}

}  // namespace

Tensor parse_npy(std::span<const uint8_t> bytes, const std::string& name) {
  if (bytes.size() < 10 || std::memcmp(bytes.data(), kMagic, 6) != 0)
    fail_file(name, "not a .npy file (bad magic: expected \\x93NUMPY)");
  int major = bytes[6];
  size_t header_len = 0, prefix = 0;
  if (major == 1) {
    header_len = bytes[8] | (size_t{bytes[9]} << 8);
    prefix = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) fail_file(name, "truncated .npy header");
    header_len = bytes[8] | (size_t{bytes[9]} << 8) | (size_t{bytes[10]} << 16) | (size_t{bytes[11]} << 24);
    prefix = 12;
  } else {
    fail_file(name, "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(bytes[7]));
  }
  if (header_len > bytes.size() - prefix)
    fail_file(name, "truncated .npy header: it says " + std::to_string(header_len) + " bytes but only " +
                        std::to_string(bytes.size() - prefix) + " follow");
  std::string_view header(reinterpret_cast<const char*>(bytes.data() + prefix), header_len);

  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
  HeaderParser(header, name).parse(descr, fortran, shape);
  ElemType dtype = dtype_from_descr(descr, name);
  if (fortran) fail_file(name, "Fortran-order .npy arrays are not supported (save with C order)");

  int64_t numel = 0;
  try {
    numel = shape_numel(shape, elem_size(dtype));
  } catch (const std::invalid_argument& e) {
    fail_file(name, e.what());
  }
  const size_t data_off = prefix + header_len;
  const size_t want = static_cast<size_t>(numel) * elem_size(dtype);
  const size_t have = bytes.size() - data_off;
  if (have < want)
    fail_file(name, "truncated: header says " + std::string(descr) + " " + shape_string(shape) + " (" +
                        std::to_string(want) + " bytes) but the file holds " + std::to_string(have) + " data bytes");
  if (have > want)
    fail_file(name, std::to_string(have - want) + " unexpected bytes after the " + shape_string(shape) + " array");
  Tensor t(dtype, shape);
  if (want) std::memcpy(t.raw(), bytes.data() + data_off, want);
  if (dtype == ElemType::boolean)
    for (uint8_t& b : std::span<uint8_t>(static_cast<uint8_t*>(t.raw()), want))
      if (b > 1) fail_file(name, "bool array holds a byte other than 0 or 1");
  return t;
}

Tensor read_npy(const std::string& path) {
  auto bytes = read_file_bytes(path);
  return parse_npy(bytes, path);
}

std::vector<uint8_t> encode_npy(const Tensor& t) {
  std::string dict = std::string("{'descr': '") + descr_of(t.dtype()) + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < t.shape().size(); ++i) dict += std::to_string(t.shape()[i]) + (t.rank() == 1 ? "," : i + 1 < t.shape().size() ? ", " : "");
  dict += "), }";
  // Pad with spaces so the data starts on a 64-byte boundary; end with '\n'.
  size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  std::vector<uint8_t> out;
  out.reserve(10 + dict.size() + t.nbytes());
  out.insert(out.end(), kMagic, kMagic + 6);
  out.push_back(1);
  out.push_back(0);
  out.push_back(static_cast<uint8_t>(dict.size() & 0xff));
  out.push_back(static_cast<uint8_t>(dict.size() >> 8));
  out.insert(out.end(), dict.begin(), dict.end());
  auto* p = static_cast<const uint8_t*>(t.raw());
  if (t.nbytes()) out.insert(out.end(), p, p + t.nbytes());
  return out;
}

void write_npy(const std::string& path, const Tensor& t) { write_file_atomic(path, encode_npy(t)); }

}  // namespace kiln::data
