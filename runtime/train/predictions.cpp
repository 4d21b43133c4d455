#include "runtime/train/predictions.h"

#include <cstring>
#include <functional>
#include <stdexcept>

namespace kiln::train {

namespace {

const EntryInfo& predict_entry(Program& program) {
  const EntryInfo* e = program.entry("predict");
  if (!e) throw std::runtime_error("program '" + program.info().name + "' has no predict entry point");
  if (e->inputs.size() != 1 || e->outputs.size() != 1)
    throw std::runtime_error("predict must take one input and give one output, it takes " +
                             std::to_string(e->inputs.size()) + " and gives " + std::to_string(e->outputs.size()));
  return *e;
}

// `features` (any number of rows) fit predict's input.
void check_predict_input(const EntryInfo& e, const Tensor& features) {
  const TensorInfo& in = e.inputs[0];
  if (features.rank() < 1 || features.dtype() != in.type || features.rank() != static_cast<int>(in.shape.size()))
    throw std::runtime_error("predict input '" + in.name + "' is " + elem_type_name(in.type) + " " +
                             shape_string(in.shape) + ", got " + elem_type_name(features.dtype()) + " " +
                             shape_string(features.shape()));
  for (int i = 1; i < features.rank(); ++i)
    if (features.dim(i) != in.shape[static_cast<size_t>(i)])
      throw std::runtime_error("predict input '" + in.name + "' is " + shape_string(in.shape) + ", got " +
                               shape_string(features.shape()));
}

// predict over n rows in batches of the program's maximum: rows(begin, b) gives each batch's input.
Tensor predict_rows(Program& program, const EntryInfo& e, int64_t n,
                    const std::function<const void*(int64_t begin, int64_t b)>& rows) {
  const int64_t max_batch = program.info().max_batch;
  std::vector<int64_t> shape = e.outputs[0].shape;
  shape[0] = n;
  Tensor probs(e.outputs[0].type, shape);
  const size_t out_row = n ? probs.nbytes() / static_cast<size_t>(n) : 0;
  for (int64_t begin = 0; begin < n; begin += max_batch) {
    int64_t b = std::min(max_batch, n - begin);
    const void* x = rows(begin, b);
    void* y = static_cast<uint8_t*>(probs.raw()) + static_cast<size_t>(begin) * out_row;
    program.run("predict", b, {x}, {y});
  }
  return probs;
}

}  // namespace

Tensor predict_all(Program& program, const Tensor& features) {
  const EntryInfo& e = predict_entry(program);
  check_predict_input(e, features);
  const int64_t n = features.dim(0);
  const size_t in_row = n ? features.nbytes() / static_cast<size_t>(n) : 0;
  return predict_rows(program, e, n, [&](int64_t begin, int64_t) {
    return static_cast<const void*>(static_cast<const uint8_t*>(features.raw()) + static_cast<size_t>(begin) * in_row);
  });
}

Tensor predict_all(Program& program, const data::Dataset& data) {
  const EntryInfo& e = predict_entry(program);
  Tensor sample, batch;
  check_predict_input(e, data.model_sample(sample));
  return predict_rows(program, e, data.size(),
                      [&](int64_t begin, int64_t b) { return data.model_rows_at(begin, b, batch); });
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

report::ConfusionMatrix confusion_matrix(Program& program, const data::Dataset& data, int classes) {
  std::vector<int> pred = predicted_classes(predict_all(program, data)), truth = label_classes(data.labels);
  report::ConfusionMatrix cm(classes);
  for (size_t i = 0; i < pred.size(); ++i) cm.add(truth[i], pred[i]);
  return cm;
}

}  // namespace kiln::train
