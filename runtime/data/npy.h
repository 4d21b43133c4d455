#pragma once
// NumPy .npy files (format versions 1.0-3.0 read, 1.0 written): the exchange
// format for `kiln run --input x.npy` and for exported parameters.
// Supported: little-endian f32, f64, i32, i64, u8 and bool ('<f4' '<f8' '<i4'
// '<i8' '|u1' '|b1'), C order. Fortran order, big-endian data and other
// dtypes are rejected with an error naming the file and the reason.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace kiln::data {

// Reads a .npy file. Throws kiln::FileError naming the file on any problem
// (bad magic, unsupported dtype, Fortran order, truncated or extra data).
Tensor read_npy(const std::string& path);
// Parses .npy bytes; `name` is used in error messages (usually the path).
Tensor parse_npy(std::span<const uint8_t> bytes, const std::string& name);

// Writes a version 1.0 .npy file (atomically: see write_file_atomic).
void write_npy(const std::string& path, const Tensor& t);
std::vector<uint8_t> encode_npy(const Tensor& t);

}  // namespace kiln::data
