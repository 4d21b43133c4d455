#pragma once
// Shared helpers for the data and checkpoint tests: a scratch folder that
// cleans up after itself, byte-file writers, gzip, tar.gz, and the path of
// the real data sets (tests that need them skip when absent).
#include "test_util.h"
#include "tests/archive_members.h"
#include <archive.h>
#include <archive_entry.h>
#include <doctest/doctest.h>
#include <stdlib.h>
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace kiln::test {

struct TempDir {
  std::string path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kiln_test_XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

inline std::vector<uint8_t> gzip_bytes(const std::vector<uint8_t>& in) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::vector<uint8_t> out(deflateBound(&zs, in.size()) + 64);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// Writes a gzip-compressed ustar archive of (member name, bytes).
inline void write_tar_gz(const std::string& path, const std::vector<std::pair<std::string, std::vector<uint8_t>>>& members) {
  archive* a = archive_write_new();
  archive_write_add_filter_gzip(a);
  archive_write_set_format_pax_restricted(a);
  REQUIRE(archive_write_open_filename(a, path.c_str()) == ARCHIVE_OK);
  write_archive_members(a, members);
  archive_write_close(a);
  archive_write_free(a);
}

// ../shared/data beside the repository, or "" when it is not there.
inline std::string shared_data_dir() {
  std::string d = KILN_SOURCE_DIR "/../shared/data";
  return std::filesystem::is_directory(d) ? d : "";
}


}  // namespace kiln::test

// Checks that `expr` throws and that the message holds every given fragment.
#define KILN_CHECK_THROWS_WITH_ALL(expr, ...)                                 \
  do {                                                                        \
    std::string kiln_msg_;                                                    \
    try {                                                                     \
      expr;                                                                   \
    } catch (const std::exception& e) {                                       \
      kiln_msg_ = e.what();                                                   \
    }                                                                         \
    INFO("message: " << kiln_msg_);                                           \
    CHECK_MESSAGE(!kiln_msg_.empty(), "expected an exception from " #expr);   \
    for (const std::string& frag : std::initializer_list<std::string>{__VA_ARGS__}) CHECK(kiln_msg_.find(frag) != std::string::npos); \
  } while (0)
