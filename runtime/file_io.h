#pragma once
// Whole-file reads and crash-safe whole-file writes, with errors that name
// the file. Data loaders, .npy and checkpoints all go through here.
#include <cstdint>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace kiln {

// A problem with a file: it cannot be read or written, or its contents are
// not what they should be. what() always starts with the file's path.
struct FileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws FileError("<path>: <what>").
[[noreturn]] void fail_file(const std::string& path, const std::string& what);

std::vector<uint8_t> read_file_bytes(const std::string& path);
bool file_exists(const std::string& path);

// Writes bytes to `path` so that a reader sees either the old file or the
// whole new one, never a mix: write `<path>.tmp.<pid>`, fsync it, rename it
// over `path`, fsync the directory. On any failure the temporary file is
// removed and the old file is untouched. `after_chunk(bytes_written)` is
// called after each chunk (1 MiB) is written; tests use it to inject faults.
void write_file_atomic(const std::string& path, std::span<const uint8_t> bytes,
                       const std::function<void(size_t)>& after_chunk = {});

}  // namespace kiln
