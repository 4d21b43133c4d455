#include <doctest/doctest.h>

#include <cstring>

#include "runtime/data/npy.h"
#include "runtime/file_io.h"
#include "tests/unit/data_fixtures.h"

using namespace kiln;
using namespace kiln::data;
using kiln::test::TempDir;

namespace {

// A hand-written .npy as NumPy 1.x writes it, to pin the byte layout.
std::vector<uint8_t> handmade_npy(const std::string& dict, const std::vector<uint8_t>& payload) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::vector<uint8_t> b = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<uint8_t>(h.size()), static_cast<uint8_t>(h.size() >> 8)};
  b.insert(b.end(), h.begin(), h.end());
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

}  // namespace

TEST_CASE("npy: every dtype round-trips bit for bit") {
  TempDir dir;
  std::vector<Tensor> ts;
  Tensor f(ElemType::f32, {2, 3});
  for (int i = 0; i < 6; ++i) f.data<float>()[i] = 0.1f * i - 0.25f;
  ts.push_back(f);
  Tensor d(ElemType::f64, {4});
  d.data<double>()[3] = -1e300;
  ts.push_back(d);
  Tensor i32(ElemType::i32, {1, 2, 2});
  i32.data<int32_t>()[1] = -7;
  ts.push_back(i32);
  Tensor i64(ElemType::i64, {});
  i64.data<int64_t>()[0] = int64_t{1} << 40;
  ts.push_back(i64);
  Tensor u8(ElemType::u8, {3, 0});
  ts.push_back(u8);
  Tensor b(ElemType::boolean, {5});
  b.data<bool>()[2] = true;
  ts.push_back(b);
  for (size_t k = 0; k < ts.size(); ++k) {
    std::string path = dir / ("t" + std::to_string(k) + ".npy");
    write_npy(path, ts[k]);
    auto raw = read_file_bytes(path);
    CHECK((10 + raw[8] + 256 * raw[9]) % 64 == 0);  // data 64-byte aligned like NumPy
    CHECK(read_npy(path).bit_equal(ts[k]));
  }
}

TEST_CASE("npy: reads a NumPy-layout file") {
  std::vector<uint8_t> payload(12);
  float vals[3] = {1.5f, -2.0f, 3.25f};
  std::memcpy(payload.data(), vals, 12);
  auto bytes = handmade_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", payload);
  Tensor t = parse_npy(bytes, "x.npy");
  CHECK(t.dtype() == ElemType::f32);
  CHECK(t.shape() == std::vector<int64_t>{3});
  CHECK(t.data<float>()[2] == 3.25f);
  CHECK(encode_npy(t) == bytes);  // we write what NumPy writes
}

TEST_CASE("npy: bad files give errors naming the file and the problem") {
  std::vector<uint8_t> four(4 * 4);
  KILN_CHECK_THROWS_WITH_ALL(parse_npy(std::vector<uint8_t>{'P', 'K', 3, 4, 0, 0, 0, 0, 0, 0, 0}, "a.npy"), "a.npy", "bad magic");
  KILN_CHECK_THROWS_WITH_ALL(parse_npy(handmade_npy("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", four), "b.npy"),
                             "b.npy", "unsupported .npy dtype '<c8'");
  KILN_CHECK_THROWS_WITH_ALL(parse_npy(handmade_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", four), "c.npy"),
                             "c.npy", "big-endian");
  KILN_CHECK_THROWS_WITH_ALL(parse_npy(handmade_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", four), "d.npy"),
                             "d.npy", "Fortran");
  KILN_CHECK_THROWS_WITH_ALL(parse_npy(handmade_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", four), "e.npy"),
                             "e.npy", "truncated", "20 bytes", "16 data bytes");
  KILN_CHECK_THROWS_WITH_ALL(parse_npy(handmade_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", four), "f.npy"),
                             "f.npy", "4 unexpected bytes");
  auto cut = handmade_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", four);
  cut.resize(30);
  KILN_CHECK_THROWS_WITH_ALL(parse_npy(cut, "g.npy"), "g.npy", "truncated .npy header");
  KILN_CHECK_THROWS_WITH_ALL(parse_npy(handmade_npy("{'descr': '<f4', 'shape': (4,), }", four), "h.npy"), "h.npy", "lacks");
  KILN_CHECK_THROWS_WITH_ALL(read_npy("/nonexistent/x.npy"), "/nonexistent/x.npy", "cannot open");
}
