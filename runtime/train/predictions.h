#pragma once
// Running a compiled model's predict entry over a whole set of inputs, and
// turning probabilities and labels into classes (for confusion matrices,
// `kiln predict` and `kiln eval`).
#include <string>
#include <vector>

#include "runtime/data/dataset.h"
#include "runtime/program.h"
#include "runtime/report/metrics.h"

namespace kiln::train {

// predict over every row of `features` ([N, ...], the entry's single input), in
// batches of the program's maximum batch size: probabilities f32 [N, K].
Tensor predict_all(Program& program, const Tensor& features);
// The same over a data set's rows as the model reads them, decoded a batch
// at a time (a data set of stored bytes is never decoded whole).
Tensor predict_all(Program& program, const data::Dataset& data);

// The class of each row: argmax of [N, K] (K > 1), or probability >= 0.5 for
// K == 1 (a sigmoid head: class 1 vs 0).
std::vector<int> predicted_classes(const Tensor& probabilities);
// The true class of each label: i32 [N] as is, one-hot f32 [N, K] by argmax,
// binary f32 [N, 1] as 0/1.
std::vector<int> label_classes(const Tensor& labels);

// Classes from predict_all vs the labels; `classes` rows and columns (2 for a binary head).
report::ConfusionMatrix confusion_matrix(Program& program, const data::Dataset& data, int classes);

}  // namespace kiln::train
