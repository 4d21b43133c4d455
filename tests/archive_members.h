#pragma once
// Regular-file members written into an open libarchive writer: what the data
// tests' tar.gz fixtures and the fuzzers' tar seeds both build.
#include <archive.h>
#include <archive_entry.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kiln::test {

inline void write_archive_members(archive* a, const std::vector<std::pair<std::string, std::vector<uint8_t>>>& members) {
  for (auto& [name, bytes] : members) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_size(e, static_cast<la_int64_t>(bytes.size()));
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_write_header(a, e);
    archive_write_data(a, bytes.data(), bytes.size());
    archive_entry_free(e);
  }
}

}  // namespace kiln::test
