#pragma once
// MNIST in its original IDX format (http://yann.lecun.com/exdb/mnist/),
// plain or gzip-compressed (detected by the gzip magic, not the name).
// IDX: bytes 0-1 zero, byte 2 the element type (0x08 = u8), byte 3 the rank,
// then rank big-endian u32 dimensions, then the elements in C order.
#include <cstdint>
#include <span>
#include <string>

#include "runtime/data/labeled_images.h"
#include "runtime/tensor.h"

namespace kiln::data {

// Any u8 IDX file, as a u8 tensor of the file's shape. Throws kiln::FileError
// naming the file (bad magic, unsupported element type, truncated data...).
Tensor read_idx_u8(const std::string& path);
// The same for the bytes of such a file (plain or gzip) held in memory;
// `name` (usually the path) prefixes every error.
Tensor parse_idx_u8(std::span<const uint8_t> bytes, const std::string& name);

// An MNIST image file (rank 3: N, 28, 28) and its label file (rank 1: N):
// images u8 [N, H, W, 1], labels i32 [N] in 0..9.
LabeledImages load_mnist(const std::string& images_path, const std::string& labels_path);

// `split` is "train" or "t10k" (or "test"): finds <dir>/<split>-images-idx3-ubyte
// and -labels-idx1-ubyte, each with or without ".gz".
LabeledImages load_mnist_split(const std::string& dir, const std::string& split);

}  // namespace kiln::data
