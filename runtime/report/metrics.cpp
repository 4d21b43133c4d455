#include "runtime/report/metrics.h"

#include <cmath>
#include <cstdio>
#include <sstream>
#include <stdexcept>

namespace kiln::report {

static std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string seed_format(const EpochMetrics& m) {
  std::string s = "Epoch : " + std::to_string(m.epoch) + " , Epoch Time : " + fixed(m.seconds, 2);
  if (!std::isnan(m.step_seconds)) s += " , Step Time : " + fixed(m.step_seconds, 2);
  s += " , Train Loss : " + fixed(m.train_loss, 3) + " , Train Acc : " + fixed(m.train_acc, 3);
  if (!std::isnan(m.val_loss)) s += " , Val Loss : " + fixed(m.val_loss, 3) + " , Val Acc : " + fixed(m.val_acc, 4);
  if (!std::isnan(m.test_loss)) s += " , Test Loss : " + fixed(m.test_loss, 3) + " , Test Acc : " + fixed(m.test_acc, 4);
  return s;
}

static nlohmann::json num_or_null(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }
static double num_from(const nlohmann::json& j, const char* k) {
  return j.contains(k) && j[k].is_number() ? j[k].get<double>() : NAN;
}

nlohmann::json to_json(const std::vector<EpochMetrics>& history) {
  nlohmann::json out = nlohmann::json::array();
  for (auto& m : history)
    out.push_back({{"epoch", m.epoch}, {"seconds", m.seconds}, {"train_loss", m.train_loss},
                   {"train_acc", m.train_acc}, {"val_loss", num_or_null(m.val_loss)},
                   {"val_acc", num_or_null(m.val_acc)}, {"test_loss", num_or_null(m.test_loss)},
                   {"test_acc", num_or_null(m.test_acc)}, {"step_seconds", num_or_null(m.step_seconds)}});
  return out;
}

std::vector<EpochMetrics> history_from_json(const nlohmann::json& j) {
  std::vector<EpochMetrics> out;
  if (!j.is_array()) throw std::runtime_error("metrics history must be a JSON array");
  for (auto& e : j) {
    EpochMetrics m;
    m.epoch = e.value("epoch", 0);
    m.seconds = num_from(e, "seconds");
    m.train_loss = num_from(e, "train_loss");
    m.train_acc = num_from(e, "train_acc");
    m.val_loss = num_from(e, "val_loss");
    m.val_acc = num_from(e, "val_acc");
    m.test_loss = num_from(e, "test_loss");
    m.test_acc = num_from(e, "test_acc");
    m.step_seconds = num_from(e, "step_seconds");
    out.push_back(m);
  }
  return out;
}

std::string to_csv(const std::vector<EpochMetrics>& history) {
  std::ostringstream os;
  os << "epoch,seconds,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,step_seconds\n";
  auto cell = [](double v) { return std::isnan(v) ? std::string() : fixed(v, 6); };
  for (auto& m : history)
    os << m.epoch << "," << cell(m.seconds) << "," << cell(m.train_loss) << "," << cell(m.train_acc) << ","
       << cell(m.val_loss) << "," << cell(m.val_acc) << "," << cell(m.test_loss) << "," << cell(m.test_acc) << ","
       << cell(m.step_seconds) << "\n";
  return os.str();
}

ConfusionMatrix::ConfusionMatrix(int classes) : classes_(classes), counts_(static_cast<size_t>(classes * classes), 0) {
  if (classes < 1) throw std::invalid_argument("a confusion matrix needs at least one class");
}

void ConfusionMatrix::add(int truth, int predicted) {
  if (truth < 0 || truth >= classes_ || predicted < 0 || predicted >= classes_)
    throw std::out_of_range("confusion matrix: class " + std::to_string(truth) + " -> " + std::to_string(predicted) +
                            " outside 0.." + std::to_string(classes_ - 1));
  ++counts_[static_cast<size_t>(truth * classes_ + predicted)];
}

int64_t ConfusionMatrix::total() const {
  int64_t t = 0;
  for (auto c : counts_) t += c;
  return t;
}

double ConfusionMatrix::accuracy() const {
  int64_t right = 0;
  for (int i = 0; i < classes_; ++i) right += at(i, i);
  int64_t t = total();
  return t ? static_cast<double>(right) / static_cast<double>(t) : 0.0;
}

std::string ConfusionMatrix::to_text(const std::vector<std::string>& labels) const {
  auto label = [&](int i) { return i < static_cast<int>(labels.size()) ? labels[static_cast<size_t>(i)] : std::to_string(i); };
  size_t w = 6;
  for (int i = 0; i < classes_; ++i) w = std::max(w, label(i).size() + 1);
  for (auto c : counts_) w = std::max(w, std::to_string(c).size() + 1);
  std::ostringstream os;
  char buf[64];
  os << "true \\ predicted\n" << std::string(w, ' ');
  for (int j = 0; j < classes_; ++j) {
    std::snprintf(buf, sizeof buf, "%*s", static_cast<int>(w), label(j).c_str());
    os << buf;
  }
  os << "\n";
  for (int i = 0; i < classes_; ++i) {
    std::snprintf(buf, sizeof buf, "%-*s", static_cast<int>(w), label(i).c_str());
    os << buf;
    for (int j = 0; j < classes_; ++j) {
      std::snprintf(buf, sizeof buf, "%*lld", static_cast<int>(w), static_cast<long long>(at(i, j)));
      os << buf;
    }
    os << "\n";
  }
  return os.str();
}

nlohmann::json ConfusionMatrix::to_json() const {
  nlohmann::json rows = nlohmann::json::array();
  for (int i = 0; i < classes_; ++i) {
    nlohmann::json row = nlohmann::json::array();
    for (int j = 0; j < classes_; ++j) row.push_back(at(i, j));
    rows.push_back(row);
  }
  return {{"classes", classes_}, {"counts", rows}, {"accuracy", accuracy()}};
}

}  // namespace kiln::report
