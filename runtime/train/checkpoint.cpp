#include "runtime/train/checkpoint.h"

#include <zlib.h>

#include <bit>
#include <cstring>
#include <set>
#include <stdexcept>

#include "runtime/file_io.h"

namespace kiln::train {

static_assert(std::endian::native == std::endian::little, "checkpoint I/O assumes a little-endian host");

namespace {

constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'C', 'K', 'P', 'T'};
constexpr int kMaxRank = 16;  // the compiler's limit too (compiler/ir/types.h); runtime does not include it

uint32_t crc32_of(std::span<const uint8_t> b) {
  return static_cast<uint32_t>(crc32_z(crc32_z(0, nullptr, 0), b.data(), b.size()));
}

class Writer {
 public:
  std::vector<uint8_t> out;
  template <class T> void num(T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out.insert(out.end(), b, b + sizeof(T));
  }
  void bytes(const void* p, size_t n) {
    auto* c = static_cast<const uint8_t*>(p);
    out.insert(out.end(), c, c + n);
  }
  void str(std::string_view s) {
    num<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void tensors(const std::vector<NamedTensor>& ts, const char* section) {
    std::set<std::string_view> seen;
    num<uint32_t>(static_cast<uint32_t>(ts.size()));
    for (auto& t : ts) {
      if (t.name.empty() || !seen.insert(t.name).second)
        throw std::invalid_argument(std::string("checkpoint: ") + section + " tensor name '" + t.name +
                                    "' is empty or appears twice");
      if (t.value.rank() > kMaxRank) throw std::invalid_argument("checkpoint: tensor '" + t.name + "' has too many dimensions");
      str(t.name);
      num<uint8_t>(static_cast<uint8_t>(t.value.dtype()));
      num<uint8_t>(static_cast<uint8_t>(t.value.rank()));
      for (int64_t d : t.value.shape()) num<int64_t>(d);
      num<uint64_t>(t.value.nbytes());
      bytes(t.value.raw(), t.value.nbytes());
    }
  }
};

// Reads with every length checked against what remains; errors say where.
class Reader {
 public:
  // `note` is appended to structural errors (see decode_checkpoint).
  Reader(std::span<const uint8_t> b, const std::string& name, std::string note = {})
      : b_(b), name_(name), note_(std::move(note)) {}

  size_t pos() const { return pos_; }
  size_t left() const { return b_.size() - pos_; }

  // A structural error (the note says whether the checksum fails too).
  [[noreturn]] void fail(const std::string& what) const { fail_file(name_, what + note_); }

  void need(uint64_t n, const std::string& what) const {
    if (n > left())
      fail("truncated at byte " + std::to_string(pos_) + " while reading " + what + " (needs " + std::to_string(n) +
           " bytes, " + std::to_string(left()) + " left)");
  }
  template <class T> T num(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(const std::string& what) {
    uint64_t n = num<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  std::vector<NamedTensor> tensors(const std::string& section) {
    // No reserve(count): a corrupt count then fails at the first read past the end.
    uint32_t count = num<uint32_t>(section + " count");
    std::vector<NamedTensor> out;
    std::set<std::string> seen;
    for (uint32_t i = 0; i < count; ++i) {
      std::string label = section + " tensor #" + std::to_string(i);
      NamedTensor t;
      t.name = str("the name of " + label);
      label = section + " tensor '" + t.name + "'";
      if (!seen.insert(t.name).second) fail(label + " appears twice");
      uint8_t dt = num<uint8_t>(label);
      if (dt > static_cast<uint8_t>(ElemType::u8)) fail(label + " has unknown dtype code " + std::to_string(dt));
      uint8_t rank = num<uint8_t>(label);
      if (rank > kMaxRank) fail(label + " has rank " + std::to_string(rank) + " (corrupt file)");
      std::vector<int64_t> shape;
      for (int d = 0; d < rank; ++d) shape.push_back(num<int64_t>(label));
      uint64_t nbytes = num<uint64_t>(label);
      int64_t numel = 0;
      try {
        numel = shape_numel(shape, elem_size(static_cast<ElemType>(dt)));
      } catch (const std::invalid_argument& e) {
        fail(label + ": " + e.what());
      }
      if (nbytes != static_cast<uint64_t>(numel) * elem_size(static_cast<ElemType>(dt)))
        fail(label + " says " + std::to_string(nbytes) + " bytes but its shape " + shape_string(shape) + " needs " +
             std::to_string(static_cast<uint64_t>(numel) * elem_size(static_cast<ElemType>(dt))));
      need(nbytes, label);  // before allocating
      t.value = Tensor(static_cast<ElemType>(dt), shape);
      if (nbytes) std::memcpy(t.value.raw(), b_.data() + pos_, nbytes);
      pos_ += nbytes;
      out.push_back(std::move(t));
    }
    return out;
  }

 private:
  std::span<const uint8_t> b_;
  const std::string& name_;
  std::string note_;
  size_t pos_ = 0;
};

}  // namespace

const Tensor* find_tensor(const std::vector<NamedTensor>& tensors, std::string_view name) {
  for (auto& t : tensors)
    if (t.name == name) return &t.value;
  return nullptr;
}

std::vector<uint8_t> encode_checkpoint(const Checkpoint& c) {
  Writer w;
  w.bytes(kMagic, 8);
  w.num<uint32_t>(kCheckpointVersion);
  w.num<uint32_t>(0);
  w.str(c.graph_json);
  w.str(c.spec_json);
  w.tensors(c.params, "params");
  w.tensors(c.optimizer_state, "optimizer");
  w.num<int64_t>(c.step);
  w.str(c.rng_state);
  w.num<int64_t>(c.data_position.epoch);
  w.num<int64_t>(c.data_position.next_batch);
  w.str(c.data_position.rng_state);
  w.str(c.metrics_json);
  w.num<uint32_t>(crc32_of(w.out));
  return std::move(w.out);
}

Checkpoint decode_checkpoint(std::span<const uint8_t> bytes, const std::string& name) {
  // Check the trailing CRC first: when it does not match, a "truncated"
  // reading may really be a corrupt length field, and the message says so.
  bool crc_ok = false;
  if (bytes.size() >= 4) {
    uint32_t stored;
    std::memcpy(&stored, bytes.data() + bytes.size() - 4, 4);
    crc_ok = stored == crc32_of(bytes.first(bytes.size() - 4));
  }
  Reader r(bytes, name, crc_ok ? "" : "; the checksum does not match either: the file is truncated or corrupt");
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kMagic, 8) != 0) {
    std::string seen;
    for (size_t i = 0; i < std::min<size_t>(8, bytes.size()); ++i)
      seen += (bytes[i] >= 32 && bytes[i] < 127) ? std::string(1, static_cast<char>(bytes[i])) : "\\x" + std::to_string(bytes[i]);
    fail_file(name, "not a kiln checkpoint (magic \"" + seen + "\", expected \"KILNCKPT\")");
  }
  r.num<uint64_t>("magic");
  uint32_t version = r.num<uint32_t>("the format version");
  if (version > kCheckpointVersion)
    fail_file(name, "format version " + std::to_string(version) + " is newer than this kiln (" + std::to_string(kCheckpointVersion) + ")");
  if (version == 0) r.fail("format version 0 is not valid");
  uint32_t flags = r.num<uint32_t>("the flags");
  if (flags != 0) r.fail("unknown flags " + std::to_string(flags));
  Checkpoint c;
  c.graph_json = r.str("the graph JSON");
  c.spec_json = r.str("the training spec JSON");
  c.params = r.tensors("params");
  c.optimizer_state = r.tensors("optimizer");
  c.step = r.num<int64_t>("the step counter");
  c.rng_state = r.str("the RNG state");
  c.data_position.epoch = r.num<int64_t>("the data position");
  c.data_position.next_batch = r.num<int64_t>("the data position");
  c.data_position.rng_state = r.str("the shuffle RNG state");
  c.metrics_json = r.str("the metrics history");
  const size_t body = r.pos();
  uint32_t stored = r.num<uint32_t>("the checksum");
  if (r.left() != 0) r.fail(std::to_string(r.left()) + " unexpected bytes after the checksum at byte " + std::to_string(body));
  uint32_t computed = crc32_of(bytes.first(body));
  if (stored != computed) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "checksum mismatch (stored CRC-32 %08x, computed %08x): the file is corrupt", stored, computed);
    fail_file(name, buf);
  }
  return c;
}

void save_checkpoint(const std::string& path, const Checkpoint& c, const std::function<void(size_t)>& after_chunk) {
  write_file_atomic(path, encode_checkpoint(c), after_chunk);
}

Checkpoint load_checkpoint(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_checkpoint(bytes, path);
}

}  // namespace kiln::train
