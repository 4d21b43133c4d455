#pragma once
// What every image loader returns: images as u8 [N, H, W, C] (channels last,
// whatever the file's own layout) and labels as i32 [N].
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace kiln::data {

struct LabeledImages {
  Tensor images;                         // u8 [N, H, W, C]
  Tensor labels;                         // i32 [N]
  std::vector<std::string> class_names;  // may be empty when the format has none

  int64_t size() const { return images.empty() && images.rank() == 0 ? 0 : images.dim(0); }
};

// Concatenates along N; all parts must have the same H, W, C.
LabeledImages concat(std::vector<LabeledImages> parts);

}  // namespace kiln::data
