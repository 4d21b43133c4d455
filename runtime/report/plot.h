#pragma once
// PNG plots drawn by gnuplot (Debian's gnuplot-nox): training curves, several
// runs on one plot (the alpha sweep), confusion-matrix heat maps.
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/report/metrics.h"

namespace kiln::report {

struct Series {
  std::string label;
  std::vector<double> x, y;
};

// One optimizer step's training loss and learning rate (steps.csv).
struct StepPoint {
  int64_t step = 0;
  double loss = 0, lr = 0;
};

// One PNG: loss and accuracy per epoch (train vs validation/test; bits per
// character instead of accuracy when the model has no accuracy), and, when
// `steps` is given, the per-step training loss (raw and smoothed) and the
// learning rate below them. Titles are printed as written.
void plot_training_curves(const std::vector<EpochMetrics>& history, const std::string& title, const std::string& png,
                          const std::vector<StepPoint>& steps = {});
// Any number of labelled series on one set of axes.
void plot_series(const std::vector<Series>& series, const std::string& title, const std::string& xlabel,
                 const std::string& ylabel, const std::string& png);
void plot_confusion(const ConfusionMatrix& cm, const std::vector<std::string>& labels, const std::string& title,
                    const std::string& png);

// Runs a gnuplot script; throws std::runtime_error with gnuplot's message if it fails
// (or says how to install gnuplot when it is missing).
void run_gnuplot(const std::string& script);

}  // namespace kiln::report
