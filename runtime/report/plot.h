#pragma once
// PNG plots drawn by gnuplot (Debian's gnuplot-nox): training curves, several
// runs on one plot (the alpha sweep), confusion-matrix heat maps.
#include <string>
#include <vector>

#include "runtime/report/metrics.h"

namespace kiln::report {

struct Series {
  std::string label;
  std::vector<double> x, y;
};

// Loss (left) and accuracy (right) per epoch, train vs val/test, one PNG.
void plot_training_curves(const std::vector<EpochMetrics>& history, const std::string& title, const std::string& png);
// Any number of labelled series on one set of axes.
void plot_series(const std::vector<Series>& series, const std::string& title, const std::string& xlabel,
                 const std::string& ylabel, const std::string& png);
void plot_confusion(const ConfusionMatrix& cm, const std::vector<std::string>& labels, const std::string& title,
                    const std::string& png);

// Runs a gnuplot script; throws std::runtime_error with gnuplot's message if it fails
// (or says how to install gnuplot when it is missing).
void run_gnuplot(const std::string& script);

}  // namespace kiln::report
