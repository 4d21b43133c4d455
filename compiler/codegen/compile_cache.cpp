#include "compiler/codegen/compile_cache.h"

#include <llvm/Config/llvm-config.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include "compiler/ir/graph.h"
#include "runtime/data/sha256.h"
#include "runtime/file_io.h"

namespace kiln::codegen {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'C', 'C', '0', '1'};
constexpr size_t kHeaderBytes = sizeof kMagic + 64;  // magic, hex SHA-256 of the payload

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// This kiln build: the executable's size and modification time. Cheap, and a
// rebuilt compiler (whose codegen may differ without a version bump) misses.
std::string build_id() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "unknown-build";
  auto size = fs::file_size(exe, ec);
  auto mtime = fs::last_write_time(exe, ec).time_since_epoch().count();
  return exe.string() + ":" + std::to_string(size) + ":" + std::to_string(mtime);
}

void put_u64(Blob& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

bool get_u64(const Blob& in, size_t& pos, uint64_t& v) {
  if (in.size() - pos < 8) return false;
  v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(in[pos + static_cast<size_t>(i)]) << (8 * i);
  pos += 8;
  return true;
}

// The blobs of a well-formed payload, or why it is not one.
std::optional<std::vector<Blob>> parse(const Blob& file, std::string& why) {
  if (file.size() < kHeaderBytes || std::memcmp(file.data(), kMagic, sizeof kMagic) != 0) {
    why = "bad header (" + std::to_string(file.size()) + " bytes)";
    return std::nullopt;
  }
  std::string stored(reinterpret_cast<const char*>(file.data()) + sizeof kMagic, 64);
  std::span<const uint8_t> payload(file.data() + kHeaderBytes, file.size() - kHeaderBytes);
  if (data::sha256_hex(payload) != stored) {
    why = "checksum mismatch";
    return std::nullopt;
  }
  Blob body(payload.begin(), payload.end());
  size_t pos = 0;
  uint64_t count = 0;
  std::vector<Blob> blobs;
  if (!get_u64(body, pos, count) || count > 4096) {
    why = "bad blob count";
    return std::nullopt;
  }
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t n = 0;
    if (!get_u64(body, pos, n) || n > body.size() - pos) {
      why = "blob " + std::to_string(i) + " runs past the end";
      return std::nullopt;
    }
    blobs.emplace_back(body.begin() + static_cast<std::ptrdiff_t>(pos), body.begin() + static_cast<std::ptrdiff_t>(pos + n));
    pos += n;
  }
  if (pos != body.size()) {
    why = "trailing bytes";
    return std::nullopt;
  }
  return blobs;
}

}  // namespace

std::string default_cache_dir() {
  if (auto d = env("KILN_CACHE_DIR"); !d.empty()) return d;
  if (auto d = env("XDG_CACHE_HOME"); !d.empty()) return d + "/kiln";
  if (auto d = env("HOME"); !d.empty()) return d + "/.cache/kiln";
  return "";
}

std::string compile_cache_key(const lower::Program& p, const CodegenOptions& opts, const HostTarget& target,
                              const std::string& kind) {
  std::string text = "kiln 0.1.0\nLLVM " LLVM_VERSION_STRING "\nbuild " + build_id() + "\n";
  text += "kind " + kind + "\ntarget " + target.triple + " " + target.cpu + " " + target.features + " " +
          std::to_string(target.vector_bits) + "\n";
  text += "options vector_bits=" + std::to_string(opts.vector_bits) + " optimize=" + std::to_string(opts.optimize) + "\n";
  // LLVM's own options change the code too (e.g. -disable-lsr=false, host.cpp).
  const char* llvm_options = std::getenv("KILN_LLVM_OPTIONS");
  text += std::string("llvm options ") + (llvm_options ? llvm_options : "") + "\n";
  // So do the switches codegen reads for comparisons (an object compiled
  // without them must not answer a run with them, nor the reverse).
  for (const char* name : {"KILN_NO_CUT_K", "KILN_NO_TRIANGLES", "KILN_NO_DIRECT_CONV", "KILN_NO_TILE_EPILOGUE"})
    text += std::string(name) + "=" + env(name) + "\n";
  text += lower::print_program(p);
  // What the Loop IR text leaves out: entry slot maps, exact constants, the source graphs.
  std::set<const Graph*> graphs;
  for (const lower::Entry& e : p.entries) {
    text += "slots " + e.name + " " + std::to_string(e.slot_count);
    for (int s : e.input_slot) text += " " + std::to_string(s);
    text += "\n";
    if (e.graph && graphs.insert(e.graph).second) text += print_graph(*e.graph);
  }
  for (const lower::Buffer& b : p.buffers)
    if (b.storage == lower::Storage::Constant)
      text.append(reinterpret_cast<const char*>(b.data.data()), b.data.size() * sizeof(double));
  return data::sha256_hex(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

std::string CompileCache::entry_path(const std::string& key) const { return dir_ + "/" + key + ".kcache"; }

std::optional<std::vector<Blob>> CompileCache::load(const std::string& key) const {
  const std::string path = entry_path(key);
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  Blob file;
  try {
    file = read_file_bytes(path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln: warning: cannot read cache entry %s (%s); compiling\n", path.c_str(), e.what());
    return std::nullopt;
  }
  std::string why;
  auto blobs = parse(file, why);
  if (!blobs) {
    std::fprintf(stderr, "kiln: warning: cache entry %s is corrupt (%s); rebuilding\n", path.c_str(), why.c_str());
    fs::remove(path, ec);
  }
  return blobs;
}

void CompileCache::store(const std::string& key, const std::vector<Blob>& blobs) const {
  Blob body;
  put_u64(body, blobs.size());
  for (const Blob& b : blobs) {
    put_u64(body, b.size());
    body.insert(body.end(), b.begin(), b.end());
  }
  Blob file(kMagic, kMagic + sizeof kMagic);
  std::string sum = data::sha256_hex(body);
  file.insert(file.end(), sum.begin(), sum.end());
  file.insert(file.end(), body.begin(), body.end());
  try {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    if (ec) fail_file(dir_, "cannot create the cache folder: " + ec.message());
    write_file_atomic(entry_path(key), file);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln: warning: could not write the compile cache (%s)\n", e.what());
  }
}

}  // namespace kiln::codegen
