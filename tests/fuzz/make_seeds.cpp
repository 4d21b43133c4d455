// Writes the seed inputs of the binary-format fuzz targets into <dir>/<target>/,
// built with the product's own encoders (so the seeds follow the formats as
// they change) and checked to parse: a seed the parser refuses would leave
// the fuzzer mutating an error path. tools/fuzz.sh runs it before fuzzing.
//
//   make_seeds DIR
#include <archive.h>
#include <archive_entry.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "runtime/data/cifar.h"
#include "runtime/data/image_decode.h"
#include "runtime/data/image_tree_import.h"
#include "runtime/data/mnist.h"
#include "runtime/data/npy.h"
#include "runtime/data/tar_extract.h"
#include "runtime/train/checkpoint.h"
#include "tests/archive_members.h"

using namespace kiln;
using Bytes = std::vector<uint8_t>;
using Members = std::vector<std::pair<std::string, Bytes>>;

namespace {

std::string seed_dir;

void write_seed(const std::string& target, const std::string& name, const Bytes& bytes) {
  std::filesystem::create_directories(seed_dir + "/" + target);
  std::ofstream out(seed_dir + "/" + target + "/" + name, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write seed " + target + "/" + name);
}

Bytes gzip(const Bytes& in) {
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  Bytes out(deflateBound(&zs, in.size()) + 64);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("deflate failed");
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// A tar archive in memory, in libarchive's `format` (ARCHIVE_FORMAT_TAR_*).
Bytes tar(const Members& members, int format) {
  archive* a = archive_write_new();
  archive_write_set_format(a, format);
  archive_write_set_bytes_in_last_block(a, 1);  // no padding to 10 KiB: seeds stay small
  Bytes out(64 << 10);
  size_t used = 0;
  if (archive_write_open_memory(a, out.data(), out.size(), &used) != ARCHIVE_OK)
    throw std::runtime_error(std::string("archive_write_open_memory: ") + archive_error_string(a));
  test::write_archive_members(a, members);
  archive_write_close(a);
  archive_write_free(a);
  out.resize(used);
  return out;
}

template <class T>
Tensor counting(ElemType dt, std::vector<int64_t> shape) {
  Tensor t(dt, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<T>()[i] = static_cast<T>(i % 2 ? i : -i);
  return t;
}

void checkpoint_seeds() {
  train::Checkpoint c;
  c.graph_json = R"({"format": "kiln.graph/1", "name": "mlp"})";
  c.spec_json = R"({"format": "kiln.train/1"})";
  c.params.push_back({"w", counting<float>(ElemType::f32, {2, 3})});
  c.params.push_back({"b", counting<double>(ElemType::f64, {3})});
  c.params.push_back({"empty", Tensor(ElemType::f32, {0, 4})});
  c.optimizer_state.push_back({"adam/m/w", counting<int64_t>(ElemType::i64, {})});
  c.optimizer_state.push_back({"count", counting<int32_t>(ElemType::i32, {2, 1})});
  c.optimizer_state.push_back({"mask", Tensor(ElemType::u8, {2})});
  c.optimizer_state.push_back({"flags", Tensor(ElemType::boolean, {1})});
  c.step = 12;
  c.rng_state = "5489";
  c.data_position = {1, 2, "7 8 9"};
  c.metrics_json = R"([{"epoch": 1, "loss": 2.5}])";
  const Bytes full = train::encode_checkpoint(c);
  train::decode_checkpoint(full, "seed full.ckpt");
  write_seed("checkpoint", "full.ckpt", full);
  const Bytes empty = train::encode_checkpoint(train::Checkpoint{});
  train::decode_checkpoint(empty, "seed empty.ckpt");
  write_seed("checkpoint", "empty.ckpt", empty);
}

void npy_seeds() {
  const std::vector<std::pair<std::string, Tensor>> tensors = {
      {"f32", counting<float>(ElemType::f32, {2, 3})},      {"f64", counting<double>(ElemType::f64, {3})},
      {"i32", counting<int32_t>(ElemType::i32, {1, 2, 2})}, {"i64", counting<int64_t>(ElemType::i64, {})},
      {"u8", Tensor(ElemType::u8, {3, 0})},                 {"bool", Tensor(ElemType::boolean, {4})}};
  for (auto& [name, t] : tensors) {
    Bytes b = data::encode_npy(t);
    data::parse_npy(b, "seed " + name);
    write_seed("npy", name + ".npy", b);
  }
  // Version 2.0: a four-byte header length.
  Bytes v1 = data::encode_npy(tensors[0].second);
  Bytes v2 = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0};
  const uint32_t header_len = v1[8] | v1[9] << 8;
  for (int s = 0; s < 32; s += 8) v2.push_back(static_cast<uint8_t>(header_len >> s));
  v2.insert(v2.end(), v1.begin() + 10, v1.end());
  data::parse_npy(v2, "seed v2");
  write_seed("npy", "f32_v2.npy", v2);
}

Bytes idx(const std::vector<uint32_t>& dims) {
  Bytes b = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  size_t n = 1;
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
    n *= d;
  }
  for (size_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(i * 7));
  return b;
}

void idx_seeds() {
  const std::vector<std::pair<std::string, Bytes>> files = {
      {"images-idx3", idx({3, 2, 3})}, {"labels-idx1", idx({3})}, {"items-idx4", idx({2, 1, 2, 2})}};
  for (auto& [name, b] : files) {
    for (const Bytes& form : {b, gzip(b)}) data::parse_idx_u8(form, "seed " + name);
    write_seed("idx", name + "-ubyte", b);
    write_seed("idx", name + "-ubyte.gz", gzip(b));
  }
}

void cifar_seeds() {
  Bytes b;
  for (int i = 0; i < 2; ++i) {
    b.push_back(static_cast<uint8_t>(i * 9));
    for (int p = 0; p < 3 * 1024; ++p) b.push_back(static_cast<uint8_t>(p / 1024 * 80 + i));
  }
  data::parse_cifar10_batch(b, "seed");
  write_seed("cifar", "two_records.bin", b);
}

data::RgbImage gradient(int side) {
  data::RgbImage img{side, side, {}};
  for (int i = 0; i < side * side; ++i)
    img.pixels.insert(img.pixels.end(), {static_cast<uint8_t>(i * 4), static_cast<uint8_t>(255 - i), 99});
  return img;
}

void image_tree_seeds() {
  const Members tree = {{"train/ant/0001.png", data::encode_png_rgb(gradient(8))},
                        {"train/bee/0001.jpg", data::encode_jpeg_rgb(gradient(8), 90)},
                        {"train/README.txt", {'h', 'i'}}};
  const std::vector<std::pair<std::string, Bytes>> archives = {
      {"tree.tar", tar(tree, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED)},
      {"tree_gnu.tar", tar(tree, ARCHIVE_FORMAT_TAR_GNUTAR)},
      {"tree.tar.gz", gzip(tar(tree, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED))}};
  for (auto& [name, b] : archives) {
    data::import_image_tree_from_memory(b, "seed " + name, {}, 1);
    write_seed("image_tree", name, b);
  }
}

void tar_extract_seeds() {
  const Members official = {{"cifar-10-batches-bin/batches.meta.txt", {'c', 'a', 't', '\n'}},
                            {"cifar-10-batches-bin/test_batch.bin", Bytes(40, 3)},
                            {"cifar-10-batches-bin/readme.html", {'<', 'p', '>'}},
                            {"other/data_batch_1.bin", Bytes(8, 1)}};
  write_seed("tar_extract", "batches.tar", tar(official, ARCHIVE_FORMAT_TAR_USTAR));
  write_seed("tar_extract", "batches.tar.gz", gzip(tar(official, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED)));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  seed_dir = argv[1];
  try {
    checkpoint_seeds();
    npy_seeds();
    idx_seeds();
    cifar_seeds();
    image_tree_seeds();
    tar_extract_seeds();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
