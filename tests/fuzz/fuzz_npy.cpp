// Fuzz target for the .npy reader: whatever the bytes, parse_npy either
// returns a tensor or throws FileError.
#include "runtime/data/npy.h"
#include "runtime/file_io.h"
#include "tests/fuzz/fuzz_target.h"

void fuzz_setup() {}

std::string fuzz_one(std::span<const uint8_t> bytes) {
  return accepted_or_refused<kiln::FileError>([&] { kiln::data::parse_npy(bytes, "<fuzz>"); });
}
