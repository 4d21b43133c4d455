#pragma once
// Parameters as a folder of .npy files, for other tools (NumPy, PyTorch):
//   <dir>/manifest.json   {"format": "kiln.params/1",
//                          "params": [{"name": "conv1/kernel", "file": "conv1_kernel.npy",
//                                      "dtype": "f32", "shape": [3, 3, 1, 32]}, ...]}
//   <dir>/<file>.npy      one per param, in manifest order
// File names are the param names with every character outside [A-Za-z0-9._-]
// replaced by '_' (a clash gets a numeric suffix); the manifest keeps the
// true names, so import gives back exactly what was exported.
#include <string>
#include <vector>

#include "runtime/train/checkpoint.h"

namespace kiln::train {

// Creates `dir` if needed; overwrites files of the same names.
void export_params_npy(const std::string& dir, const std::vector<NamedTensor>& params);
// Reads <dir>/manifest.json and every file it lists; throws kiln::FileError
// naming the manifest or .npy file at fault (also when a file's dtype or
// shape disagrees with the manifest).
std::vector<NamedTensor> import_params_npy(const std::string& dir);

// "conv1/kernel:0" -> "conv1_kernel_0"
std::string sanitize_file_name(const std::string& name);

}  // namespace kiln::train
