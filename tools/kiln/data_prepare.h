#pragma once
// `kiln data prepare`: fetch (or copy from a local folder), verify and
// convert the data sets into <out>/ — see data/README.md for the layout.
#include <string>

namespace kiln::cli {

struct PrepareOptions {
  std::string from;  // local folder with mnist/ and cifar10/ (as ../shared/data); "" = download
  std::string out;   // where prepared data goes
  std::string only;  // "", "mnist" or "cifar10"
};

// Throws InputError (exit 1) for anything the user can fix: a missing or
// mismatching source file, no network, a corrupt archive.
void prepare_data(const PrepareOptions& options);

// data/ under the repository root (found by walking up from the current
// folder to one holding CMakeLists.txt and data/README.md), else ./data.
std::string default_data_dir();

}  // namespace kiln::cli
