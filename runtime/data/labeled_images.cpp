#include "runtime/data/labeled_images.h"

#include <cstring>
#include <stdexcept>

namespace kiln::data {

LabeledImages concat(std::vector<LabeledImages> parts) {
  if (parts.empty()) throw std::invalid_argument("concat: no parts");
  if (parts.size() == 1) return std::move(parts[0]);
  std::vector<int64_t> shape = parts[0].images.shape();
  int64_t n = 0;
  for (auto& p : parts) {
    if (p.images.rank() != 4 || !std::equal(shape.begin() + 1, shape.end(), p.images.shape().begin() + 1))
      throw std::invalid_argument("concat: image shapes " + shape_string(shape) + " and " +
                                  shape_string(p.images.shape()) + " differ");
    n += p.images.dim(0);
  }
  shape[0] = n;
  LabeledImages out;
  out.images = Tensor(ElemType::u8, shape);
  out.labels = Tensor(ElemType::i32, {n});
  out.class_names = parts[0].class_names;
  size_t img_off = 0, lab_off = 0;
  for (auto& p : parts) {
    std::memcpy(static_cast<uint8_t*>(out.images.raw()) + img_off, p.images.raw(), p.images.nbytes());
    std::memcpy(static_cast<uint8_t*>(out.labels.raw()) + lab_off, p.labels.raw(), p.labels.nbytes());
    img_off += p.images.nbytes();
    lab_off += p.labels.nbytes();
  }
  return out;
}

}  // namespace kiln::data
