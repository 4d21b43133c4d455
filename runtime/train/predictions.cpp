#include "runtime/train/predictions.h"

#include <cstring>
#include <stdexcept>

namespace kiln::train {

Tensor predict_all(Program& program, const Tensor& features) {
  const EntryInfo* e = program.entry("predict");
  if (!e) throw std::runtime_error("program '" + program.info().name + "' has no predict entry point");
  if (e->inputs.size() != 1 || e->outputs.size() != 1)
    throw std::runtime_error("predict must take one input and give one output, it takes " +
                             std::to_string(e->inputs.size()) + " and gives " + std::to_string(e->outputs.size()));
  const TensorInfo& in = e->inputs[0];
  const TensorInfo& out = e->outputs[0];
  if (features.rank() < 1 || features.dtype() != in.type || features.rank() != static_cast<int>(in.shape.size()))
    throw std::runtime_error("predict input '" + in.name + "' is " + elem_type_name(in.type) + " " +
                             shape_string(in.shape) + ", got " + elem_type_name(features.dtype()) + " " +
                             shape_string(features.shape()));
  for (int i = 1; i < features.rank(); ++i)
    if (features.dim(i) != in.shape[static_cast<size_t>(i)])
      throw std::runtime_error("predict input '" + in.name + "' is " + shape_string(in.shape) + ", got " +
                               shape_string(features.shape()));
  const int64_t n = features.dim(0), max_batch = program.info().max_batch;
  std::vector<int64_t> shape = out.shape;
  shape[0] = n;
  Tensor probs(out.type, shape);
  const size_t in_row = n ? features.nbytes() / static_cast<size_t>(n) : 0;
  const size_t out_row = n ? probs.nbytes() / static_cast<size_t>(n) : 0;
  for (int64_t begin = 0; begin < n; begin += max_batch) {
    int64_t b = std::min(max_batch, n - begin);
    const void* x = static_cast<const uint8_t*>(features.raw()) + static_cast<size_t>(begin) * in_row;
    void* y = static_cast<uint8_t*>(probs.raw()) + static_cast<size_t>(begin) * out_row;
    program.run("predict", b, {x}, {y});
  }
  return probs;
}

static int argmax_row(const float* p, int64_t k) {
  int best = 0;
  for (int64_t j = 1; j < k; ++j)
    if (p[j] > p[best]) best = static_cast<int>(j);
  return best;
}

std::vector<int> predicted_classes(const Tensor& probabilities) {
  if (probabilities.rank() != 2) throw std::runtime_error("probabilities must be [N, K]");
  const int64_t n = probabilities.dim(0), k = probabilities.dim(1);
  const float* p = probabilities.data<float>();
  std::vector<int> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = k == 1 ? p[i] >= 0.5f : argmax_row(p + i * k, k);
  return out;
}

std::vector<int> label_classes(const Tensor& labels) {
  std::vector<int> out(static_cast<size_t>(labels.dim(0)));
  if (labels.dtype() == ElemType::i32) {
    auto s = labels.span<int32_t>();
    out.assign(s.begin(), s.end());
    return out;
  }
  if (labels.dtype() != ElemType::f32 || labels.rank() != 2) throw std::runtime_error("labels must be i32 [N] or f32 [N, K]");
  const int64_t k = labels.dim(1);
  const float* p = labels.data<float>();
  for (size_t i = 0; i < out.size(); ++i) out[i] = k == 1 ? p[i] >= 0.5f : argmax_row(p + static_cast<int64_t>(i) * k, k);
  return out;
}

report::ConfusionMatrix confusion_matrix(Program& program, const Tensor& features, const Tensor& labels, int classes) {
  std::vector<int> pred = predicted_classes(predict_all(program, features)), truth = label_classes(labels);
  report::ConfusionMatrix cm(classes);
  for (size_t i = 0; i < pred.size(); ++i) cm.add(truth[i], pred[i]);
  return cm;
}

}  // namespace kiln::train
