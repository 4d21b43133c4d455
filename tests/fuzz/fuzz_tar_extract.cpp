// Fuzz target for tar extraction (kiln data prepare unpacks the official
// CIFAR-10 archive with it): whatever the bytes, extract_tar_members either
// writes the accepted members under the destination or throws FileError.
//
// The extractor reads a path, so each input is written to a file first. The
// member filter hands back whatever follows "cifar-10-batches-bin/" (as the
// product's filter would, before it checks the name), so mutated names such
// as "", "..", "a/b" reach the extractor's own refusal of unsafe names.
// Files go under $TMPDIR (tools/fuzz.sh points it into build-fuzz/).
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>

#include "runtime/data/tar_extract.h"
#include "runtime/file_io.h"
#include "tests/fuzz/fuzz_target.h"

namespace {

std::string work_dir;

std::optional<std::string> after_prefix(const std::string& member) {
  const std::string prefix = "cifar-10-batches-bin/";
  if (member.rfind(prefix, 0) != 0) return std::nullopt;
  return member.substr(prefix.size());
}

}  // namespace

void fuzz_setup() {
  std::string pattern = (std::filesystem::temp_directory_path() / "kiln_fuzz_tar_XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("fuzz_tar_extract: mkdtemp failed in " + pattern);
  work_dir = pattern;
}

std::string fuzz_one(std::span<const uint8_t> bytes) {
  const std::string archive = work_dir + "/in.tar", dest = work_dir + "/out";
  {
    std::ofstream out(archive, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("fuzz_tar_extract: cannot write " + archive);
  }
  std::string error;
  try {
    kiln::data::extract_tar_members(archive, dest, after_prefix);
  } catch (const kiln::FileError& e) {
    error = e.what();
  }
  std::filesystem::remove_all(dest);
  return error;
}
