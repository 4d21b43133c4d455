#pragma once
// Per-epoch metrics as the trainer records them, with CSV/JSON writers, and a
// confusion matrix.
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kiln::report {

struct EpochMetrics {
  int epoch = 0;                 // 1-based
  double seconds = 0;            // wall time of the epoch's training (loader waits included, evaluation not)
  double step_seconds = NAN;     // of which in the compiled steps (NaN: not recorded)
  double train_loss = 0, train_acc = 0;   // sample-weighted over the epoch
  double val_loss = NAN, val_acc = NAN;   // NaN when there is no validation set
  double test_loss = NAN, test_acc = NAN;
};

// The seed's line: "Epoch : 1 , Epoch Time : 3.69 , Train Loss : 3.048 , Train Acc : 0.194 , Test Loss : 2.04 , Test Acc : 0.228",
// with " , Step Time : 3.61" after the epoch time when the steps' own time was recorded.
std::string seed_format(const EpochMetrics& m);

nlohmann::json to_json(const std::vector<EpochMetrics>& history);
std::vector<EpochMetrics> history_from_json(const nlohmann::json& j);
// Columns: epoch,seconds,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,step_seconds (empty cell = none).
std::string to_csv(const std::vector<EpochMetrics>& history);

class ConfusionMatrix {
 public:
  explicit ConfusionMatrix(int classes);
  void add(int truth, int predicted);  // out-of-range classes are counted as errors: throws
  int classes() const { return classes_; }
  int64_t at(int truth, int predicted) const { return counts_[static_cast<size_t>(truth * classes_ + predicted)]; }
  int64_t total() const;
  double accuracy() const;
  // Rows are true classes, columns predictions; labels default to 0..k-1.
  std::string to_text(const std::vector<std::string>& labels = {}) const;
  nlohmann::json to_json() const;
 private:
  int classes_;
  std::vector<int64_t> counts_;
};

}  // namespace kiln::report
