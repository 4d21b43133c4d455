#include "runtime/data/tar_extract.h"

#include <archive_entry.h>

#include <filesystem>

#include "runtime/data/tar_reader.h"
#include "runtime/file_io.h"

namespace kiln::data {

std::vector<std::string> extract_tar_members(const std::string& archive_path, const std::string& dest_dir,
                                             const std::function<std::optional<std::string>(const std::string&)>& want) {
  TarReader a = open_tar_file(archive_path);
  std::filesystem::create_directories(dest_dir);
  std::vector<std::string> written;
  archive_entry* e = nullptr;
  while (true) {
    int rc = archive_read_next_header(a.get(), &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
      fail_file(archive_path, "corrupt archive: " + archive_error_text(a.get()));
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
      if (n < 0) fail_file(archive_path, "member " + member + ": corrupt archive data: " + archive_error_text(a.get()));
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
