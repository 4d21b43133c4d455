// Fuzz target for the checkpoint reader (runtime/train/CHECKPOINT.md): whatever
// the bytes, decode_checkpoint either returns a checkpoint or throws FileError.
#include "runtime/file_io.h"
#include "runtime/train/checkpoint.h"
#include "tests/fuzz/fuzz_target.h"

void fuzz_setup() {}

std::string fuzz_one(std::span<const uint8_t> bytes) {
  return accepted_or_refused<kiln::FileError>([&] { kiln::train::decode_checkpoint(bytes, "<fuzz>"); });
}
