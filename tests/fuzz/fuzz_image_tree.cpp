// Fuzz target for the image-tree importer: a tar (plain or compressed, read by
// libarchive as the product does) of <root>/<class>/<image> members, each
// JPEG or PNG decoded. Whatever the bytes, import_image_tree_from_memory
// either returns labeled images or throws FileError.
#include "runtime/data/image_tree_import.h"
#include "runtime/file_io.h"
#include "tests/fuzz/fuzz_target.h"

void fuzz_setup() {}

std::string fuzz_one(std::span<const uint8_t> bytes) {
  // One decoding thread: no thread start per input, and a finding replays alike.
  return accepted_or_refused<kiln::FileError>([&] { kiln::data::import_image_tree_from_memory(bytes, "<fuzz>", {}, 1); });
}
