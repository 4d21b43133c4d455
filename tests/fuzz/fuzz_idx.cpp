// Fuzz target for the IDX (MNIST) reader, plain and gzip: whatever the bytes,
// parse_idx_u8 either returns a tensor or throws FileError. The reader sniffs
// the gzip magic itself, so one target covers both forms; the seeds hold both.
#include "runtime/data/mnist.h"
#include "runtime/file_io.h"
#include "tests/fuzz/fuzz_target.h"

void fuzz_setup() {}

std::string fuzz_one(std::span<const uint8_t> bytes) {
  return accepted_or_refused<kiln::FileError>([&] { kiln::data::parse_idx_u8(bytes, "<fuzz>"); });
}
