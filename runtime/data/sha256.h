#pragma once
// SHA-256 (OpenSSL EVP) of files and byte ranges, as lowercase hex: how
// `kiln data prepare` checks sources against the published checksums.
#include <cstdint>
#include <span>
#include <string>

namespace kiln::data {

std::string sha256_hex(std::span<const uint8_t> bytes);
// Streams the file; throws kiln::FileError naming it when it cannot be read.
std::string sha256_file_hex(const std::string& path);

}  // namespace kiln::data
