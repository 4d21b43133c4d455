#pragma once
// In-memory gzip decompression (zlib), so loaders accept files plain or .gz
// alike: they sniff the gzip magic rather than trusting the file name.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kiln::data {

bool is_gzip(std::span<const uint8_t> bytes);  // starts with 1f 8b
// Decompresses every gzip member in `bytes`; throws kiln::FileError naming
// `name` when the stream is corrupt or truncated, or inflates past max_out.
std::vector<uint8_t> gunzip(std::span<const uint8_t> bytes, const std::string& name,
                            size_t max_out = size_t{8} << 30);
// Reads a file and decompresses it when it is gzip.
std::vector<uint8_t> read_maybe_gzip(const std::string& path);

}  // namespace kiln::data
