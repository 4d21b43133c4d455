#include "runtime/data/mnist.h"

#include <cstring>
#include <sstream>

#include "runtime/data/gzip.h"
#include "runtime/file_io.h"

namespace kiln::data {

namespace {

uint32_t be32(const uint8_t* p) { return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3]; }

// "60000 images of 28x28" / "60000 labels": how the header reads, for errors.
std::string describe(const std::vector<int64_t>& dims) {
  std::string s = std::to_string(dims[0]) + (dims.size() == 1 ? " labels" : dims.size() == 3 ? " images" : " items");
  if (dims.size() > 1) {
    s += " of ";
    for (size_t i = 1; i < dims.size(); ++i) s += (i > 1 ? "x" : "") + std::to_string(dims[i]);
  }
  return s;
}

std::string decimal(double v) {
  std::ostringstream os;
  os.precision(12);
  os << v;
  return os.str();
}

}  // namespace

Tensor read_idx_u8(const std::string& path) { return parse_idx_u8(read_file_bytes(path), path); }

Tensor parse_idx_u8(std::span<const uint8_t> file_bytes, const std::string& path) {
  // Gzip is sniffed from the bytes, whatever the name says.
  std::vector<uint8_t> inflated;
  if (is_gzip(file_bytes)) inflated = gunzip(file_bytes, path);
  const std::span<const uint8_t> b = is_gzip(file_bytes) ? std::span<const uint8_t>(inflated) : file_bytes;
  if (b.size() < 4) fail_file(path, "truncated: " + std::to_string(b.size()) + " bytes is too short for an IDX header");
  if (b[0] != 0 || b[1] != 0)
    fail_file(path, "not an IDX file (bad magic " + std::to_string(b[0]) + " " + std::to_string(b[1]) + ", expected 0 0)");
  if (b[2] != 0x08)
    fail_file(path, "unsupported IDX element type 0x" + (std::ostringstream() << std::hex << int{b[2]}).str() +
                        " (only 0x08, unsigned byte, is supported)");
  const int rank = b[3];
  if (rank < 1 || rank > 4) fail_file(path, "unsupported IDX rank " + std::to_string(rank));
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  if (b.size() < header) fail_file(path, "truncated: the IDX header needs " + std::to_string(header) + " bytes, the file holds " + std::to_string(b.size()));
  std::vector<int64_t> dims;
  for (int i = 0; i < rank; ++i) dims.push_back(be32(&b[4 + 4 * i]));
  // u32 dimensions can multiply past 64 bits: shape_numel refuses such a
  // shape (even one a zero dimension empties) before it is compared with the data.
  int64_t numel = 0;
  try {
    numel = shape_numel(dims);
  } catch (const std::invalid_argument& e) {
    fail_file(path, std::string("IDX header: ") + e.what());
  }
  const size_t have = b.size() - header;
  if (static_cast<uint64_t>(numel) != have) {
    double per_item = 1;
    for (int i = 1; i < rank; ++i) per_item *= static_cast<double>(dims[i]);
    std::string held = per_item > 0 ? decimal(static_cast<double>(have) / per_item) : "no room for any";
    fail_file(path, std::string(have < static_cast<uint64_t>(numel) ? "truncated" : "unexpected trailing data") +
                        ": header says " + describe(dims) + " but the file holds " + held);
  }
  Tensor t(ElemType::u8, dims);
  if (have) std::memcpy(t.raw(), b.data() + header, have);
  return t;
}

LabeledImages load_mnist(const std::string& images_path, const std::string& labels_path) {
  Tensor images = read_idx_u8(images_path);
  if (images.rank() != 3) fail_file(images_path, "an MNIST image file has rank 3 (N, rows, cols), this one has rank " + std::to_string(images.rank()));
  Tensor raw_labels = read_idx_u8(labels_path);
  if (raw_labels.rank() != 1) fail_file(labels_path, "an MNIST label file has rank 1, this one has rank " + std::to_string(raw_labels.rank()));
  if (raw_labels.dim(0) != images.dim(0))
    fail_file(labels_path, "holds " + std::to_string(raw_labels.dim(0)) + " labels but " + images_path + " holds " +
                               std::to_string(images.dim(0)) + " images");
  LabeledImages out;
  out.labels = Tensor(ElemType::i32, {raw_labels.dim(0)});
  const uint8_t* src = raw_labels.data<uint8_t>();
  int32_t* dst = out.labels.data<int32_t>();
  for (int64_t i = 0; i < raw_labels.dim(0); ++i) {
    if (src[i] > 9) fail_file(labels_path, "label " + std::to_string(src[i]) + " of item " + std::to_string(i) + " is not a digit 0-9");
    dst[i] = src[i];
  }
  images.reshape({images.dim(0), images.dim(1), images.dim(2), 1});
  out.images = std::move(images);
  for (int d = 0; d < 10; ++d) out.class_names.push_back(std::to_string(d));
  return out;
}

LabeledImages load_mnist_split(const std::string& dir, const std::string& split) {
  std::string s = split == "test" ? "t10k" : split;
  if (s != "train" && s != "t10k") throw std::invalid_argument("MNIST split must be train or t10k, not '" + split + "'");
  auto find = [&](const std::string& base) {
    for (const char* ext : {"", ".gz"}) {
      std::string p = dir + "/" + base + ext;
      if (file_exists(p)) return p;
    }
    fail_file(dir + "/" + base + ".gz", "not found (nor without .gz); run `kiln data prepare --only mnist`");
  };
  std::string images = find(s + "-images-idx3-ubyte");  // images first: report the first missing file
  std::string labels = find(s + "-labels-idx1-ubyte");
  return load_mnist(images, labels);
}

}  // namespace kiln::data
