#pragma once
// Safe extraction of selected members of a tar archive (any compression
// libarchive knows), e.g. cifar-10-batches-bin/*.bin out of the official
// cifar-10-binary.tar.gz. Only regular files whose member path the caller
// accepts are written, each atomically, under one destination folder: no
// absolute paths, "..", links or devices ever reach the disk.
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kiln::data {

// want(member_path) returns the file name to write under dest_dir, or
// nullopt to skip the member. Returns the paths written. Throws
// kiln::FileError naming the archive (and member) on a corrupt archive.
std::vector<std::string> extract_tar_members(const std::string& archive_path, const std::string& dest_dir,
                                             const std::function<std::optional<std::string>(const std::string&)>& want);

}  // namespace kiln::data
