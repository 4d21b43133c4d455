// Fuzz target for the CIFAR-10 batch reader: whatever the bytes,
// parse_cifar10_batch either returns labeled images or throws FileError.
#include "runtime/data/cifar.h"
#include "runtime/file_io.h"
#include "tests/fuzz/fuzz_target.h"

void fuzz_setup() {}

std::string fuzz_one(std::span<const uint8_t> bytes) {
  return accepted_or_refused<kiln::FileError>([&] { kiln::data::parse_cifar10_batch(bytes, "<fuzz>"); });
}
