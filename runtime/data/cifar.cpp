#include "runtime/data/cifar.h"

#include <filesystem>
#include <fstream>

#include "runtime/file_io.h"

namespace kiln::data {

namespace {
constexpr int kPlane = kCifarSide * kCifarSide;  // 1024
}

const std::vector<std::string>& cifar10_class_names() {
  static const std::vector<std::string> names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                 "dog",      "frog",       "horse", "ship", "truck"};
  return names;
}

LabeledImages load_cifar10_batch(const std::string& path) { return parse_cifar10_batch(read_file_bytes(path), path); }

LabeledImages parse_cifar10_batch(std::span<const uint8_t> b, const std::string& path) {
  if (b.empty()) fail_file(path, "empty file (a CIFAR-10 batch holds records of 3073 bytes)");
  if (b.size() % kCifarRecordBytes != 0)
    fail_file(path, "size " + std::to_string(b.size()) + " is not a multiple of the 3073-byte CIFAR-10 record (" +
                        std::to_string(b.size() / kCifarRecordBytes) + " records and " +
                        std::to_string(b.size() % kCifarRecordBytes) + " bytes left over)");
  const int64_t n = static_cast<int64_t>(b.size() / kCifarRecordBytes);
  LabeledImages out;
  out.images = Tensor(ElemType::u8, {n, kCifarSide, kCifarSide, 3});
  out.labels = Tensor(ElemType::i32, {n});
  uint8_t* img = out.images.data<uint8_t>();
  int32_t* lab = out.labels.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* rec = b.data() + i * kCifarRecordBytes;
    if (rec[0] > 9)
      fail_file(path, "record " + std::to_string(i) + " (byte " + std::to_string(i * kCifarRecordBytes) +
                          ") has label " + std::to_string(rec[0]) + ", not 0-9");
    lab[i] = rec[0];
    // Planes R, G, B (CHW) -> interleaved pixels (HWC).
    const uint8_t* r = rec + 1;
    uint8_t* dst = img + i * 3 * kPlane;
    for (int p = 0; p < kPlane; ++p) {
      dst[3 * p + 0] = r[p];
      dst[3 * p + 1] = r[kPlane + p];
      dst[3 * p + 2] = r[2 * kPlane + p];
    }
  }
  out.class_names = cifar10_class_names();
  return out;
}

LabeledImages load_cifar10(const std::string& dir_in, const std::string& split) {
  std::string dir = dir_in;
  if (!file_exists(dir + "/test_batch.bin") && !file_exists(dir + "/data_batch_1.bin") &&
      std::filesystem::is_directory(dir + "/cifar-10-batches-bin"))
    dir += "/cifar-10-batches-bin";
  std::vector<std::string> files;
  if (split == "train") {
    for (int i = 1; i <= 5; ++i) files.push_back(dir + "/data_batch_" + std::to_string(i) + ".bin");
  } else if (split == "test") {
    files.push_back(dir + "/test_batch.bin");
  } else {
    throw std::invalid_argument("CIFAR-10 split must be train or test, not '" + split + "'");
  }
  std::vector<LabeledImages> parts;
  for (auto& f : files) {
    if (!file_exists(f)) fail_file(f, "not found; run `kiln data prepare --only cifar10`");
    parts.push_back(load_cifar10_batch(f));
  }
  LabeledImages out = concat(std::move(parts));
  out.class_names = cifar10_class_names();
  std::ifstream meta(dir + "/batches.meta.txt");
  std::vector<std::string> names;
  for (std::string line; std::getline(meta, line);)
    if (!line.empty()) names.push_back(line);
  if (!names.empty()) out.class_names = names;
  return out;
}

void write_cifar10_batch(const std::string& path, const LabeledImages& data, int64_t begin, int64_t count) {
  const auto& s = data.images.shape();
  if (data.images.dtype() != ElemType::u8 || s.size() != 4 || s[1] != kCifarSide || s[2] != kCifarSide || s[3] != 3)
    throw std::invalid_argument(path + ": CIFAR-10 records need u8 images [N, 32, 32, 3], got " + shape_string(s));
  if (begin < 0 || count < 0 || begin + count > s[0]) throw std::invalid_argument(path + ": record range out of bounds");
  std::vector<uint8_t> out(static_cast<size_t>(count) * kCifarRecordBytes);
  const uint8_t* img = data.images.data<uint8_t>();
  const int32_t* lab = data.labels.data<int32_t>();
  for (int64_t i = 0; i < count; ++i) {
    uint8_t* rec = out.data() + i * kCifarRecordBytes;
    int32_t label = lab[begin + i];
    if (label < 0 || label > 255) throw std::invalid_argument(path + ": label " + std::to_string(label) + " does not fit a byte");
    rec[0] = static_cast<uint8_t>(label);
    const uint8_t* src = img + (begin + i) * 3 * kPlane;
    for (int p = 0; p < kPlane; ++p) {
      rec[1 + p] = src[3 * p + 0];
      rec[1 + kPlane + p] = src[3 * p + 1];
      rec[1 + 2 * kPlane + p] = src[3 * p + 2];
    }
  }
  write_file_atomic(path, out);
}

std::vector<std::string> write_cifar10_split(const std::string& dir, const std::string& split, const LabeledImages& data) {
  std::filesystem::create_directories(dir);
  std::vector<std::string> written;
  const int64_t n = data.size();
  if (n == 0) throw std::invalid_argument(dir + ": no images to write for CIFAR-10 split " + split);
  if (split == "train") {
    for (int64_t b = 0; b * kCifarBatchRecords < n; ++b) {
      std::string path = dir + "/data_batch_" + std::to_string(b + 1) + ".bin";
      int64_t begin = b * kCifarBatchRecords;
      write_cifar10_batch(path, data, begin, std::min<int64_t>(kCifarBatchRecords, n - begin));
      written.push_back(path);
    }
  } else if (split == "test") {
    write_cifar10_batch(dir + "/test_batch.bin", data, 0, n);
    written.push_back(dir + "/test_batch.bin");
  } else {
    throw std::invalid_argument("CIFAR-10 split must be train or test, not '" + split + "'");
  }
  std::string meta;
  for (auto& c : data.class_names) meta += c + "\n";
  write_file_atomic(dir + "/batches.meta.txt", std::span(reinterpret_cast<const uint8_t*>(meta.data()), meta.size()));
  written.push_back(dir + "/batches.meta.txt");
  return written;
}

}  // namespace kiln::data
