#include "runtime/data/tar_extract.h"

#include <archive.h>
#include <archive_entry.h>

#include <filesystem>
#include <memory>

#include "runtime/file_io.h"

namespace kiln::data {

std::vector<std::string> extract_tar_members(const std::string& archive_path, const std::string& dest_dir,
                                             const std::function<std::optional<std::string>(const std::string&)>& want) {
  if (!file_exists(archive_path)) fail_file(archive_path, "not found");
  std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  if (archive_read_open_filename(a.get(), archive_path.c_str(), 1 << 16) != ARCHIVE_OK)
    fail_file(archive_path, std::string("cannot open as a tar archive: ") + archive_error_string(a.get()));
  std::filesystem::create_directories(dest_dir);
  std::vector<std::string> written;
  archive_entry* e = nullptr;
  while (true) {
    int rc = archive_read_next_header(a.get(), &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
      fail_file(archive_path, std::string("corrupt archive: ") + archive_error_string(a.get()));
    if (archive_entry_filetype(e) != AE_IFREG) continue;
    std::string member = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
    std::optional<std::string> name = want(member);
    if (!name) continue;
    if (name->empty() || name->find('/') != std::string::npos || *name == "." || *name == "..")
      fail_file(archive_path, "member " + member + ": refusing to write it as '" + *name + "'");
    std::vector<uint8_t> bytes;
    uint8_t buf[1 << 16];
    while (true) {
      la_ssize_t n = archive_read_data(a.get(), buf, sizeof buf);
      if (n < 0) fail_file(archive_path, "member " + member + ": corrupt archive data: " + archive_error_string(a.get()));
      if (n == 0) break;
      bytes.insert(bytes.end(), buf, buf + n);
    }
    std::string out = dest_dir + "/" + *name;
    write_file_atomic(out, bytes);
    written.push_back(out);
  }
  return written;
}

}  // namespace kiln::data
