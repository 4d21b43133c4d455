#include <doctest/doctest.h>

#include <filesystem>

#include "runtime/data/mnist.h"
#include "runtime/data/tar_extract.h"
#include "runtime/file_io.h"
#include "tests/unit/data_fixtures.h"

using namespace kiln;
using kiln::test::TempDir;

TEST_CASE("tar extraction writes only accepted members, flat, under the destination") {
  TempDir dir;
  test::write_tar_gz(dir / "a.tar.gz", {{"cifar-10-batches-bin/test_batch.bin", {1, 2, 3}},
                                        {"cifar-10-batches-bin/readme.html", {4}},
                                        {"../evil.bin", {5}}});
  auto written = data::extract_tar_members(dir / "a.tar.gz", dir / "out", [](const std::string& m) -> std::optional<std::string> {
    if (m == "cifar-10-batches-bin/test_batch.bin") return "test_batch.bin";
    return std::nullopt;
  });
  CHECK(written == std::vector<std::string>{dir / "out/test_batch.bin"});
  CHECK(read_file_bytes(dir / "out/test_batch.bin") == std::vector<uint8_t>{1, 2, 3});
  CHECK(!std::filesystem::exists(dir / "evil.bin"));
  KILN_CHECK_THROWS_WITH_ALL(data::extract_tar_members(dir / "a.tar.gz", dir / "out", [](const std::string&) { return std::optional<std::string>("../x"); }),
                             "a.tar.gz", "refusing");
  test::write_bytes(dir / "bad.tar.gz", {0x1f, 0x8b, 8, 0, 1, 2});
  KILN_CHECK_THROWS_WITH_ALL(data::extract_tar_members(dir / "bad.tar.gz", dir / "out", [](const std::string&) { return std::nullopt; }),
                             "bad.tar.gz");
}

// Found by tools/fuzz.sh (target tar_extract): libarchive fails to open a
// .tar.gz whose gzip trailer is cut off without saying why (a null message),
// which crashed the extractor as it built its error.
TEST_CASE("tar extraction refuses a tar.gz missing its last bytes, naming the archive") {
  TempDir dir;
  test::write_tar_gz(dir / "cut.tar.gz", {{"cifar-10-batches-bin/test_batch.bin", {1, 2, 3}}});
  auto bytes = read_file_bytes(dir / "cut.tar.gz");
  bytes.resize(bytes.size() - 4);
  test::write_bytes(dir / "cut.tar.gz", bytes);
  KILN_CHECK_THROWS_WITH_ALL(data::extract_tar_members(dir / "cut.tar.gz", dir / "out", [](const std::string&) { return std::nullopt; }),
                             "cut.tar.gz", "cannot open as a tar archive", "truncated or corrupt");
}

TEST_CASE("kiln data prepare --only mnist from a local folder, twice") {
  std::string root = test::shared_data_dir();
  if (root.empty()) {
    MESSAGE("skipped: ../shared/data is absent");
    return;
  }
  TempDir out;
  const std::string cmd = std::string(KILN_BINARY) + " data prepare --only mnist --from '" + root + "' --out '" + out.path + "'";
  auto [rc, text] = test::run_command(cmd);
  INFO(text);
  REQUIRE(rc == 0);
  CHECK(text.find("checksum ok") != std::string::npos);
  auto d = data::load_mnist_split(out / "mnist", "train");
  CHECK(d.size() == 60000);
  // Idempotent: the second run finds verified outputs and copies nothing.
  auto [rc2, text2] = test::run_command(cmd);
  INFO(text2);
  CHECK(rc2 == 0);
  CHECK(text2.find("present, checksum ok") != std::string::npos);
  CHECK(text2.find("copied") == std::string::npos);
}

TEST_CASE("kiln data prepare refuses a source whose checksum does not match") {
  TempDir from, out;
  std::filesystem::create_directories(from / "mnist");
  test::write_bytes(from / "mnist/train-images-idx3-ubyte.gz", {1, 2, 3});
  auto [rc, text] = test::run_command(std::string(KILN_BINARY) + " data prepare --only mnist --from '" + from.path +
                                      "' --out '" + out.path + "'");
  INFO(text);
  CHECK(rc == 1);
  CHECK(text.find("train-images-idx3-ubyte.gz: checksum mismatch") != std::string::npos);
  CHECK(!std::filesystem::exists(out / "mnist/train-images-idx3-ubyte.gz"));
  auto [rc2, text2] = test::run_command(std::string(KILN_BINARY) + " data prepare --only cifar10 --from '" + from.path +
                                        "' --out '" + out.path + "'");
  INFO(text2);
  CHECK(rc2 == 1);
  CHECK(text2.find("holds neither") != std::string::npos);
}
