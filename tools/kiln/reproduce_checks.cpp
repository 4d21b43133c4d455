#include "tools/kiln/reproduce_checks.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>

namespace kiln::cli {
namespace {

std::string num(double v, int digits = 4) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

const ExperimentRun* find(const std::vector<ExperimentRun>& runs, const std::string& name) {
  for (auto& r : runs)
    if (r.name == name) return &r;
  return nullptr;
}

// E1/E2 at batch 64: the seed's epoch-1 accuracies within ±0.03, epoch-10 test accuracy ≥ 0.40.
void mlp_b64_criteria(const ExperimentRun& r, std::vector<CriterionResult>& out) {
  const auto& h = r.run.result.history;
  if (h.empty()) return;
  out.push_back({r.id, "epoch 1 train acc within ±0.03 of 0.194", num(h[0].train_acc),
                 std::abs(h[0].train_acc - 0.194) <= 0.03});
  out.push_back({r.id, "epoch 1 test acc within ±0.03 of 0.228", num(h[0].test_acc),
                 std::abs(h[0].test_acc - 0.228) <= 0.03});
  if (h.size() >= 10)
    out.push_back({r.id, "epoch 10 test acc ≥ 0.40", num(h[9].test_acc), h[9].test_acc >= 0.40});
}

}  // namespace

double max_relative_difference(const std::vector<report::EpochMetrics>& a, const std::vector<report::EpochMetrics>& b) {
  double worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    for (auto [x, y] : std::initializer_list<std::pair<double, double>>{{a[i].train_loss, b[i].train_loss},
                                                                         {a[i].train_acc, b[i].train_acc},
                                                                         {a[i].test_loss, b[i].test_loss},
                                                                         {a[i].test_acc, b[i].test_acc}})
      if (!std::isnan(x) && !std::isnan(y)) worst = std::max(worst, std::abs(x - y) / std::max(std::abs(y), 1e-12));
  return worst;
}

std::vector<CriterionResult> evaluate_criteria(const std::vector<ExperimentRun>& runs, const bool* e4b_identical) {
  std::vector<CriterionResult> out;
  for (const char* name : {"e1_mlp_manual_b64", "e2_mlp_autodiff_b64"})
    if (const ExperimentRun* r = find(runs, name)) mlp_b64_criteria(*r, out);
  for (const char* variant : {"b64", "full"}) {
    const ExperimentRun* e1 = find(runs, std::string("e1_mlp_manual_") + variant);
    const ExperimentRun* e2 = find(runs, std::string("e2_mlp_autodiff_") + variant);
    if (!e1 || !e2) continue;
    double d = max_relative_difference(e2->run.result.history, e1->run.result.history);
    char measured[48];
    std::snprintf(measured, sizeof measured, "%.2g", d);
    out.push_back({"E2", std::string("every printed number within 1e-3 relative of E1 (") + variant + ")", measured,
                   d <= 1e-3});
  }

  // E3: final training loss rises with alpha; at alpha = 1 the loss stays flat.
  std::vector<const ExperimentRun*> e3;
  for (auto& r : runs)
    if (r.id == "E3" && !std::isnan(r.alpha) && !r.run.result.history.empty()) e3.push_back(&r);
  std::sort(e3.begin(), e3.end(), [](auto* a, auto* b) { return a->alpha < b->alpha; });
  if (e3.size() >= 2) {
    bool rising = true;
    std::ostringstream measured;
    for (size_t i = 0; i < e3.size(); ++i) {
      double loss = e3[i]->run.result.history.back().train_loss;
      if (i) {
        measured << " < ";
        rising = rising && loss > e3[i - 1]->run.result.history.back().train_loss;
      }
      measured << num(loss, 3);
    }
    out.push_back({"E3", "final train loss rises with α", measured.str(), rising});
  }
  for (auto* r : e3) {
    if (r->alpha != 1.0) continue;
    const auto& h = r->run.result.history;
    double worst = 0;
    for (auto& m : h) worst = std::max(worst, std::abs(m.train_loss - h[0].train_loss) / std::abs(h[0].train_loss));
    char measured[48];
    std::snprintf(measured, sizeof measured, "largest relative change %.2g", worst);
    out.push_back({"E3", "α = 1: every epoch's train loss equals the first within 1e-5 relative", measured, worst <= 1e-5});
  }

  for (auto& r : runs)
    if (r.id == "E4a" && !r.run.result.history.empty()) {
      double acc = r.run.result.history.back().test_acc;
      out.push_back({"E4a", "seed " + std::to_string(r.seed) + ": test acc ≥ 0.97", num(acc), acc >= 0.97});
    }
  if (e4b_identical)
    out.push_back({"E4b", "reloaded predictions bit-identical", *e4b_identical ? "identical" : "different",
                   *e4b_identical});
  const ExperimentRun *c = nullptr, *d = nullptr;
  for (auto& r : runs) {
    if (r.id == "E4c" && !c && !r.run.result.history.empty()) c = &r;
    if (r.id == "E4d" && !d && !r.run.result.history.empty()) d = &r;
  }
  if (c) {
    double acc = c->run.result.history.back().test_acc;
    out.push_back({"E4c", "test acc ≥ 0.93", num(acc), acc >= 0.93});
    out.push_back({"E4c", "65 trainable params", std::to_string(c->run.trainable_params),
                   c->run.trainable_params == 65});
  }
  if (c && d) {
    double dc = c->run.result.history.back().test_acc, dd = d->run.result.history.back().test_acc;
    out.push_back({"E4d", "test acc above E4c's", num(dd) + " vs " + num(dc), dd > dc});
  }
  return out;
}

std::string criteria_table(const std::vector<CriterionResult>& results, bool quick) {
  std::ostringstream os;
  os << "| experiment | criterion | kiln | verdict |\n|---|---|---|---|\n";
  for (auto& r : results)
    os << "| " << r.experiment << " | " << r.criterion << " | " << r.measured << " | " << (r.pass ? (quick ? "met" : "pass") : (quick ? "not met (subset)" : "**FAIL**"))
       << " |\n";
  return os.str();
}

}  // namespace kiln::cli
