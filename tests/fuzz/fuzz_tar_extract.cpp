// Fuzz target for tar extraction (kiln data prepare unpacks the official
// CIFAR-10 archive with it): whatever the bytes, extract_tar_members either
// writes the accepted members under the destination or throws FileError.
//
// The extractor reads a path, so each input is written to a file first. The
// member filter hands back whatever follows "cifar-10-batches-bin/" (as the
// product's filter would, before it checks the name), so mutated names such
// as "", "..", "a/b" reach the extractor's own refusal of unsafe names.
// Files go under $TMPDIR (tools/fuzz.sh points it to a scratch folder).
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>

#include "runtime/data/tar_extract.h"
#include "runtime/file_io.h"
#include "tests/fuzz/fuzz_target.h"

namespace {

std::optional<std::string> after_prefix(const std::string& member) {
  const std::string prefix = "cifar-10-batches-bin/";
  if (member.rfind(prefix, 0) != 0) return std::nullopt;
  return member.substr(prefix.size());
}

// This process's scratch folder, made on first use and removed at exit. Not
// made in fuzz_setup: the fork server's children would share it, and the
// first to exit would remove it from under the next.
const std::string& work_dir() {
  // Never destroyed: the exit handler reads it after static destructors ran.
  static const std::string* dir = [] {
    std::string pattern = (std::filesystem::temp_directory_path() / "kiln_fuzz_tar_XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("fuzz_tar_extract: mkdtemp failed in " + pattern);
    auto* made = new std::string(pattern);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(work_dir(), ec);
    });
    return made;
  }();
  return *dir;
}

}  // namespace

void fuzz_setup() {}

std::string fuzz_one(std::span<const uint8_t> bytes) {
  const std::string archive = work_dir() + "/in.tar", dest = work_dir() + "/out";
  {
    std::ofstream out(archive, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("fuzz_tar_extract: cannot write " + archive);
  }
  std::string error =
      accepted_or_refused<kiln::FileError>([&] { kiln::data::extract_tar_members(archive, dest, after_prefix); });
  std::filesystem::remove_all(dest);
  return error;
}
