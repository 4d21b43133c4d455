#include <doctest/doctest.h>

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "runtime/data/cifar.h"
#include "runtime/data/image_decode.h"
#include "runtime/data/image_tree_import.h"
#include "runtime/file_io.h"
#include "tests/unit/data_fixtures.h"

// stb_image: a second, independent JPEG decoder to check the importer against.
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#include <stb/stb_image.h>

using namespace kiln;
using namespace kiln::data;
using kiln::test::TempDir;

namespace {

// Record i: label i % 10; R plane = i, G plane = 100 + pixel index % 100,
// B plane = 255 - i. Written byte by byte here, independent of the writer.
std::vector<uint8_t> cifar_records(int n) {
  std::vector<uint8_t> b;
  for (int i = 0; i < n; ++i) {
    b.push_back(static_cast<uint8_t>(i % 10));
    for (int p = 0; p < 1024; ++p) b.push_back(static_cast<uint8_t>(i));
    for (int p = 0; p < 1024; ++p) b.push_back(static_cast<uint8_t>(100 + p % 100));
    for (int p = 0; p < 1024; ++p) b.push_back(static_cast<uint8_t>(255 - i));
  }
  return b;
}

RgbImage solid(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  RgbImage img{w, h, {}};
  for (int i = 0; i < w * h; ++i) img.pixels.insert(img.pixels.end(), {r, g, b});
  return img;
}

// Every member of a tar.gz, by name.
std::vector<std::pair<std::string, std::vector<uint8_t>>> read_tar(const std::string& path) {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> out;
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_all(a);
  REQUIRE(archive_read_open_filename(a, path.c_str(), 1 << 16) == ARCHIVE_OK);
  archive_entry* e;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    if (archive_entry_filetype(e) != AE_IFREG) continue;
    std::vector<uint8_t> bytes(static_cast<size_t>(archive_entry_size(e)));
    archive_read_data(a, bytes.data(), bytes.size());
    out.emplace_back(archive_entry_pathname(e), std::move(bytes));
  }
  archive_read_free(a);
  return out;
}

}  // namespace

TEST_CASE("cifar: hand-made records load as HWC with planes R, G, B") {
  TempDir dir;
  test::write_bytes(dir / "data_batch_1.bin", cifar_records(12));
  LabeledImages d = load_cifar10_batch(dir / "data_batch_1.bin");
  REQUIRE(d.images.shape() == std::vector<int64_t>{12, 32, 32, 3});
  const uint8_t* px = d.images.data<uint8_t>();
  for (int i : {0, 5, 11}) {
    CHECK(d.labels.data<int32_t>()[i] == i % 10);
    for (int p : {0, 37, 1023}) {
      const uint8_t* rgb = px + (i * 1024 + p) * 3;  // row p/32, col p%32
      CHECK(rgb[0] == i);
      CHECK(rgb[1] == 100 + p % 100);
      CHECK(rgb[2] == 255 - i);
    }
  }
  // The writer gives back the same bytes.
  write_cifar10_batch(dir / "again.bin", d, 0, 12);
  CHECK(read_file_bytes(dir / "again.bin") == cifar_records(12));
}

TEST_CASE("cifar: bad batch files name the file and the problem") {
  TempDir dir;
  auto b = cifar_records(3);
  b.pop_back();
  test::write_bytes(dir / "x.bin", b);
  KILN_CHECK_THROWS_WITH_ALL(load_cifar10_batch(dir / "x.bin"), "x.bin", "not a multiple of the 3073-byte", "2 records and 3072 bytes");
  b = cifar_records(3);
  b[3073] = 10;
  test::write_bytes(dir / "y.bin", b);
  KILN_CHECK_THROWS_WITH_ALL(load_cifar10_batch(dir / "y.bin"), "y.bin", "record 1", "label 10");
  test::write_bytes(dir / "z.bin", {});
  KILN_CHECK_THROWS_WITH_ALL(load_cifar10_batch(dir / "z.bin"), "z.bin", "empty");
  KILN_CHECK_THROWS_WITH_ALL(load_cifar10(dir.path, "train"), "data_batch_1.bin", "not found");
}

TEST_CASE("cifar: importer on a small tar.gz of PNGs and JPEGs") {
  TempDir dir;
  std::string tgz = dir / "tree.tar.gz";
  // Folder names that are not CIFAR's: sorted order, labels 0 = "ant", 1 = "bee".
  test::write_tar_gz(tgz, {{"train/bee/0001.png", encode_png_rgb(solid(32, 32, 10, 20, 30))},
                           {"train/ant/0002.jpg", encode_jpeg_rgb(solid(32, 32, 200, 100, 50), 95)},
                           {"train/README.txt", {'h', 'i'}},
                           {"train/ant/0001.PNG", encode_png_rgb(solid(32, 32, 1, 2, 3))}});
  ImageTreeImport r = import_image_tree(tgz, {}, 2);
  CHECK(r.root == "train");
  CHECK(r.data.class_names == std::vector<std::string>{"ant", "bee"});
  CHECK(r.members == std::vector<std::string>{"train/ant/0001.PNG", "train/ant/0002.jpg", "train/bee/0001.png"});
  REQUIRE(r.data.images.shape() == std::vector<int64_t>{3, 32, 32, 3});
  const uint8_t* px = r.data.images.data<uint8_t>();
  CHECK(px[0] == 1);
  CHECK(px[2] == 3);
  CHECK(std::abs(px[3072 + 0] - 200) <= 2);  // JPEG is lossy
  CHECK(std::abs(px[3072 + 2] - 50) <= 2);
  CHECK(px[2 * 3072 + 1] == 20);
  CHECK(std::vector<int32_t>(r.data.labels.span<int32_t>().begin(), r.data.labels.span<int32_t>().end()) ==
        std::vector<int32_t>{0, 0, 1});
  // Written in the official layout and read back by the loader.
  write_cifar10_split(dir / "bin", "test", r.data);
  LabeledImages back = load_cifar10(dir / "bin", "test");
  CHECK(back.images.bit_equal(r.data.images));
  CHECK(back.labels.bit_equal(r.data.labels));
  CHECK(back.class_names.size() == 2);  // meta has 2 names: official names not forced
}

TEST_CASE("cifar: importer errors name the archive and the member") {
  TempDir dir;
  auto good = encode_jpeg_rgb(solid(32, 32, 9, 9, 9), 90);
  auto cut = good;
  cut.resize(cut.size() / 2);
  test::write_tar_gz(dir / "a.tar.gz", {{"test/cat/0001.jpg", good}, {"test/cat/0002.jpg", cut}});
  KILN_CHECK_THROWS_WITH_ALL(import_image_tree(dir / "a.tar.gz"), "a.tar.gz", "member test/cat/0002.jpg", "corrupt JPEG");
  test::write_tar_gz(dir / "b.tar.gz", {{"test/cat/0001.png", {'n', 'o', 'p', 'e'}}});
  KILN_CHECK_THROWS_WITH_ALL(import_image_tree(dir / "b.tar.gz"), "b.tar.gz", "member test/cat/0001.png", "not a JPEG or PNG");
  auto png = encode_png_rgb(solid(32, 32, 1, 1, 1));
  png.resize(png.size() - 20);
  test::write_tar_gz(dir / "c.tar.gz", {{"test/dog/1.png", png}});
  KILN_CHECK_THROWS_WITH_ALL(import_image_tree(dir / "c.tar.gz"), "c.tar.gz", "member test/dog/1.png", "corrupt PNG");
  test::write_tar_gz(dir / "d.tar.gz", {{"test/cat/1.jpg", good}, {"test/dog/1.png", encode_png_rgb(solid(16, 32, 1, 1, 1))}});
  KILN_CHECK_THROWS_WITH_ALL(import_image_tree(dir / "d.tar.gz"), "d.tar.gz", "member test/dog/1.png is 16x32");
  test::write_tar_gz(dir / "e.tar.gz", {{"train/cat/1.jpg", good}, {"test/cat/1.jpg", good}});
  KILN_CHECK_THROWS_WITH_ALL(import_image_tree(dir / "e.tar.gz"), "e.tar.gz", "one split");
  test::write_bytes(dir / "f.tar.gz", test::gzip_bytes(std::vector<uint8_t>(5000, 'x')));
  KILN_CHECK_THROWS_WITH_ALL(import_image_tree(dir / "f.tar.gz"), "f.tar.gz");
  test::write_bytes(dir / "g.tar.gz", {1, 2, 3});
  KILN_CHECK_THROWS_WITH_ALL(import_image_tree(dir / "g.tar.gz"), "g.tar.gz");
  // A tar.gz cut in half: the gzip/tar layer fails, naming the archive.
  test::write_tar_gz(dir / "h.tar.gz", {{"test/cat/1.jpg", good}, {"test/cat/2.jpg", good}, {"test/cat/3.jpg", good}});
  auto h = read_file_bytes(dir / "h.tar.gz");
  h.resize(h.size() / 2);
  test::write_bytes(dir / "h.tar.gz", h);
  KILN_CHECK_THROWS_WITH_ALL(import_image_tree(dir / "h.tar.gz"), "h.tar.gz");
  KILN_CHECK_THROWS_WITH_ALL(import_image_tree(dir / "missing.tar.gz"), "missing.tar.gz", "not found");
}

// Found by tools/fuzz.sh (target image_tree): libarchive fails to open a
// .tar.gz whose gzip trailer is cut off without saying why (a null message),
// which crashed the importer as it built its error.
TEST_CASE("cifar: importer refuses a tar.gz missing its last bytes, naming the archive") {
  TempDir dir;
  test::write_tar_gz(dir / "cut.tar.gz", {{"test/cat/1.png", encode_png_rgb(solid(4, 4, 1, 2, 3))}});
  auto bytes = read_file_bytes(dir / "cut.tar.gz");
  bytes.resize(bytes.size() - 4);
  test::write_bytes(dir / "cut.tar.gz", bytes);
  KILN_CHECK_THROWS_WITH_ALL(import_image_tree(dir / "cut.tar.gz"), "cut.tar.gz", "cannot open as a tar archive",
                             "truncated or corrupt");
  KILN_CHECK_THROWS_WITH_ALL(import_image_tree_from_memory(bytes, "in-memory.tar.gz"), "in-memory.tar.gz",
                             "cannot open as a tar archive", "truncated or corrupt");
  // The in-memory form reads a whole archive as the file form does.
  test::write_tar_gz(dir / "whole.tar.gz", {{"test/cat/1.png", encode_png_rgb(solid(4, 4, 1, 2, 3))}});
  ImageTreeImport r = import_image_tree_from_memory(read_file_bytes(dir / "whole.tar.gz"), "whole.tar.gz", {}, 1);
  CHECK(r.members == std::vector<std::string>{"test/cat/1.png"});
  CHECK(r.data.images.shape() == std::vector<int64_t>{1, 4, 4, 3});
}

// Found while fuzzing the image_tree target: a few bytes of header claiming
// 32767x32767 made the decoder allocate 3 GB (12.8 GB at 65280x65280) before
// it found the pixel data missing. The size is now refused from the header.
TEST_CASE("cifar: an image whose header claims a huge size is refused before its pixels are allocated") {
  auto jpeg = encode_jpeg_rgb(solid(8, 8, 1, 2, 3), 90);
  const uint8_t sof0[] = {0xff, 0xc0};  // baseline frame header: marker, length, precision, height, width
  const auto sof = std::search(jpeg.begin(), jpeg.end(), std::begin(sof0), std::end(sof0));
  REQUIRE(sof != jpeg.end());
  for (size_t at : {5, 7}) sof[at] = 0x7f, sof[at + 1] = 0xff;  // height, width: 32767
  KILN_CHECK_THROWS_WITH_ALL(decode_image(jpeg), "JPEG of 32767x32767 pixels is too large");
  // PNG: IHDR's width and height, with its CRC recomputed so libpng reads on.
  auto png = encode_png_rgb(solid(8, 8, 1, 2, 3));
  for (size_t at : {16, 20}) png[at] = 0, png[at + 1] = 0, png[at + 2] = 0x4e, png[at + 3] = 0x20;  // 20000
  const uint32_t crc = static_cast<uint32_t>(crc32(0, png.data() + 12, 17));
  for (int i = 0; i < 4; ++i) png[29 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
  KILN_CHECK_THROWS_WITH_ALL(decode_image(png), "PNG of 20000x20000 pixels is too large");
  // In an archive, the error names the archive and the member.
  TempDir dir;
  test::write_tar_gz(dir / "huge.tar.gz", {{"train/cat/1.jpg", jpeg}});
  KILN_CHECK_THROWS_WITH_ALL(import_image_tree(dir / "huge.tar.gz"), "huge.tar.gz", "member train/cat/1.jpg",
                             "32767x32767 pixels is too large");
}

TEST_CASE("cifar: importer on the real CIFAR-10 test archive") {
  std::string root = test::shared_data_dir();
  if (root.empty()) {
    MESSAGE("skipped: ../shared/data is absent");
    return;
  }
  const std::string tgz = root + "/cifar10/cifar10-test-jpeg.tar.gz";
  auto t0 = std::chrono::steady_clock::now();
  ImageTreeImport r = import_image_tree(tgz);
  MESSAGE("imported 10,000 JPEGs in " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s");
  REQUIRE(r.data.images.shape() == std::vector<int64_t>{10000, 32, 32, 3});
  CHECK(r.data.class_names == cifar10_class_names());
  std::vector<int> counts(10);
  for (int32_t l : r.data.labels.span<int32_t>()) counts.at(l)++;
  CHECK(counts == std::vector<int>(10, 1000));
  CHECK(r.members.front() == "test/airplane/0000.jpg");

  // Independent check: decode every 50th member with stb_image straight from
  // the archive; the per-channel means must agree with the imported records.
  auto members = read_tar(tgz);
  std::map<std::string, size_t> record_of;
  for (size_t i = 0; i < r.members.size(); ++i) record_of[r.members[i]] = i;
  double stb_sum[3] = {0, 0, 0}, imp_sum[3] = {0, 0, 0};
  int checked = 0;
  for (size_t k = 0; k < members.size(); k += 50) {
    auto& [name, bytes] = members[k];
    int w, h, c;
    uint8_t* px = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &c, 3);
    REQUIRE(px);
    REQUIRE(w * h == 1024);
    REQUIRE(record_of.count(name));
    // The label is the folder.
    std::string cls = name.substr(5, name.find('/', 5) - 5);
    CHECK(r.data.class_names[r.data.labels.data<int32_t>()[record_of[name]]] == cls);
    const uint8_t* rec = r.data.images.data<uint8_t>() + record_of[name] * 3072;
    for (int p = 0; p < 3072; ++p) stb_sum[p % 3] += px[p], imp_sum[p % 3] += rec[p];
    stbi_image_free(px);
    ++checked;
  }
  CHECK(checked == 200);
  for (int ch = 0; ch < 3; ++ch) CHECK(imp_sum[ch] / (checked * 1024) == doctest::Approx(stb_sum[ch] / (checked * 1024)).epsilon(0.01));

  // Written as test_batch.bin and loaded back, the records are the same.
  TempDir dir;
  write_cifar10_split(dir.path, "test", r.data);
  LabeledImages back = load_cifar10(dir.path, "test");
  CHECK(back.images.bit_equal(r.data.images));
  CHECK(back.class_names == cifar10_class_names());
}
