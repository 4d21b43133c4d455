#pragma once
// kiln training checkpoints: everything needed to resume a run exactly.
//
// File format, version 1 (all integers little-endian; see also CHECKPOINT.md):
//
//   magic        8 bytes  "KILNCKPT"
//   version      u32      format version (1); a newer file is refused
//   flags        u32      0 (reserved)
//   graph        string   the model graph JSON
//   spec         string   the training spec JSON
//   params       u32 count, then count tensors
//   optimizer    u32 count, then count tensors (moments, `prev`, ...)
//   step         i64      optimizer steps taken
//   rng          string   the trainer's random-generator state (opaque bytes)
//   data pos.    i64 epoch, i64 next batch, string shuffle RNG state
//                (kiln::data::BatchPosition)
//   metrics      string   metrics history JSON
//   checksum     u32      zlib CRC-32 of every byte before it
//
//   string = u64 byte length, then the bytes
//   tensor = string name, u8 dtype (0 f32, 1 f64, 2 i32, 3 i64, 4 bool, 5 u8),
//            u8 rank, rank x i64 dims, u64 byte length (= elements x dtype
//            size), then the raw little-endian values in C order
//
// Saving is atomic (write_file_atomic: temp file, fsync, rename, fsync dir),
// so a crash or kill at any moment leaves the previous checkpoint intact.
// Loading checks the magic, the version, every length against the bytes that
// remain (before allocating), and the checksum; errors name the file and say
// what is wrong and where.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/data/batch_position.h"
#include "runtime/tensor.h"

namespace kiln::train {

constexpr uint32_t kCheckpointVersion = 1;

struct NamedTensor {
  std::string name;
  Tensor value;
};

struct Checkpoint {
  std::string graph_json;
  std::string spec_json;
  std::vector<NamedTensor> params;           // names unique, order kept
  std::vector<NamedTensor> optimizer_state;  // names unique, order kept
  int64_t step = 0;
  std::string rng_state;
  data::BatchPosition data_position;
  std::string metrics_json;
};

// Finds a tensor by name; nullptr when absent.
const Tensor* find_tensor(const std::vector<NamedTensor>& tensors, std::string_view name);

std::vector<uint8_t> encode_checkpoint(const Checkpoint& c);
// `name` (usually the path) prefixes every error. Throws kiln::FileError.
Checkpoint decode_checkpoint(std::span<const uint8_t> bytes, const std::string& name);

// after_chunk: see write_file_atomic (fault injection in tests).
void save_checkpoint(const std::string& path, const Checkpoint& c,
                     const std::function<void(size_t)>& after_chunk = {});
Checkpoint load_checkpoint(const std::string& path);

}  // namespace kiln::train
