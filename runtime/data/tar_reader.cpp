#include "runtime/data/tar_reader.h"

#include <cstring>

#include "runtime/file_io.h"

namespace kiln::data {

namespace {

TarReader new_tar_reader() {
  TarReader a(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  return a;
}

}  // namespace

std::string archive_error_text(archive* a) {
  if (const char* text = archive_error_string(a)) return text;
  if (int err = archive_errno(a)) return std::strerror(err);
  return "the data is truncated or corrupt (libarchive gives no detail)";
}

TarReader open_tar_file(const std::string& path) {
  if (!file_exists(path)) fail_file(path, "not found");
  TarReader a = new_tar_reader();
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK)
    fail_file(path, "cannot open as a tar archive: " + archive_error_text(a.get()));
  return a;
}

TarReader open_tar_memory(std::span<const uint8_t> bytes, const std::string& name) {
  TarReader a = new_tar_reader();
  if (archive_read_open_memory(a.get(), bytes.data(), bytes.size()) != ARCHIVE_OK)
    fail_file(name, "cannot open as a tar archive: " + archive_error_text(a.get()));
  return a;
}

}  // namespace kiln::data
