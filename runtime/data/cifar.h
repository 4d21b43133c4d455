#pragma once
// The CIFAR-10 binary release (https://www.cs.toronto.edu/~kriz/cifar.html):
// cifar-10-batches-bin/data_batch_1.bin ... data_batch_5.bin (10,000 records
// each), test_batch.bin, batches.meta.txt (class names, one a line).
// A record is 3073 bytes: 1 label byte (0-9), then 3072 pixel bytes as three
// channel planes R, G, B, each 32x32 in row-major order (channels first).
//
// Loaders convert to channels last on load: images come back as u8
// [N, 32, 32, 3] (HWC), like MNIST's [N, 28, 28, 1]; the writer converts back.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/data/labeled_images.h"

namespace kiln::data {

constexpr int kCifarSide = 32;
constexpr int kCifarRecordBytes = 1 + 3 * 32 * 32;  // 3073
constexpr int kCifarBatchRecords = 10000;

// The ten classes, in the official label order.
const std::vector<std::string>& cifar10_class_names();

// One batch file. Throws kiln::FileError naming the file when its size is not
// a multiple of 3073 or a label is not 0-9.
LabeledImages load_cifar10_batch(const std::string& path);
// The same for a batch file's bytes held in memory; `name` (usually the path)
// prefixes every error.
LabeledImages parse_cifar10_batch(std::span<const uint8_t> bytes, const std::string& name);

// `split` "train" (data_batch_1..5.bin, in order) or "test" (test_batch.bin).
// `dir` is the folder that holds them, or one that holds cifar-10-batches-bin/.
// Class names come from batches.meta.txt when present, else the official ones.
LabeledImages load_cifar10(const std::string& dir, const std::string& split);

// Writes images u8 [N, 32, 32, 3] and labels i32 [N] (records [begin,
// begin+count)) as one batch file, atomically.
void write_cifar10_batch(const std::string& path, const LabeledImages& data, int64_t begin, int64_t count);

// Writes a whole split in the official layout into `dir`: "train" as
// data_batch_1.bin ... (10,000 records each, the last one may hold fewer;
// 50,000 images give exactly data_batch_1..5), "test" as test_batch.bin; and
// batches.meta.txt with data.class_names. Returns the files written.
std::vector<std::string> write_cifar10_split(const std::string& dir, const std::string& split, const LabeledImages& data);

}  // namespace kiln::data
