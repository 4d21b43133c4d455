#pragma once
// Opening tar archives for reading, shared by the image-tree importer and tar
// extraction: any compression libarchive knows (gzip, bzip2, xz, ...), tar
// formats only, and errors that name the archive.
#include <archive.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace kiln::data {

using TarReader = std::unique_ptr<archive, decltype(&archive_read_free)>;

// Throws kiln::FileError naming the archive when it is missing or unreadable.
TarReader open_tar_file(const std::string& path);
// `name` stands for the archive in errors; `bytes` must outlive the reader.
TarReader open_tar_memory(std::span<const uint8_t> bytes, const std::string& name);

// libarchive's message for the last error on `a`. libarchive may fail
// without one (archive_error_string gives null, e.g. for a truncated gzip
// stream at open), so this never returns an empty reason.
std::string archive_error_text(archive* a);

}  // namespace kiln::data
