#include "runtime/data/gzip.h"

#include <zlib.h>

#include <algorithm>

#include "runtime/file_io.h"

namespace kiln::data {

bool is_gzip(std::span<const uint8_t> bytes) { return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b; }

std::vector<uint8_t> gunzip(std::span<const uint8_t> bytes, const std::string& name, size_t max_out) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) fail_file(name, "zlib inflateInit failed");
  std::vector<uint8_t> out(std::max<size_t>(bytes.size() * 4, 1 << 16));
  size_t produced = 0, consumed = 0;
  int rc = Z_OK;
  while (true) {
    if (produced == out.size()) {
      if (out.size() >= max_out) {
        inflateEnd(&zs);
        fail_file(name, "gzip data inflates to more than " + std::to_string(max_out) + " bytes");
      }
      out.resize(std::min(max_out, out.size() * 2));
    }
    // zlib counts in uInt; feed at most 1 GiB per call.
    size_t in_chunk = std::min<size_t>(bytes.size() - consumed, 1u << 30);
    size_t out_chunk = std::min<size_t>(out.size() - produced, 1u << 30);
    zs.next_in = const_cast<Bytef*>(bytes.data() + consumed);
    zs.avail_in = static_cast<uInt>(in_chunk);
    zs.next_out = out.data() + produced;
    zs.avail_out = static_cast<uInt>(out_chunk);
    rc = inflate(&zs, Z_NO_FLUSH);
    consumed += in_chunk - zs.avail_in;
    produced += out_chunk - zs.avail_out;
    if (rc == Z_STREAM_END) {
      // Concatenated gzip members are one stream (RFC 1952); trailing zero
      // padding after the last member is ignored, as gzip(1) does.
      bool more = consumed < bytes.size() &&
                  !std::all_of(bytes.begin() + consumed, bytes.end(), [](uint8_t b) { return b == 0; });
      if (!more) break;
      inflateReset(&zs);
      continue;
    }
    if (rc == Z_BUF_ERROR && consumed == bytes.size()) {
      inflateEnd(&zs);
      fail_file(name, "truncated gzip data (the stream ends after " + std::to_string(bytes.size()) +
                          " compressed bytes, " + std::to_string(produced) + " inflated)");
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      std::string msg = zs.msg ? zs.msg : "error " + std::to_string(rc);
      inflateEnd(&zs);
      fail_file(name, "corrupt gzip data at compressed byte " + std::to_string(consumed) + ": " + msg);
    }
  }
  inflateEnd(&zs);
  out.resize(produced);
  return out;
}

std::vector<uint8_t> read_maybe_gzip(const std::string& path) {
  auto bytes = read_file_bytes(path);
  if (!is_gzip(bytes)) return bytes;
  return gunzip(bytes, path);
}

}  // namespace kiln::data
