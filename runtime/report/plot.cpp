#include "runtime/report/plot.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unistd.h>

namespace kiln::report {

namespace fs = std::filesystem;

static std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

void run_gnuplot(const std::string& script) {
  fs::path dir = fs::temp_directory_path() / ("kiln-plot-" + std::to_string(getpid()));
  fs::create_directories(dir);
  fs::path file = dir / "plot.gp", log = dir / "gnuplot.log";
  std::ofstream(file) << script;
  std::string cmd = "gnuplot " + quoted(file.string()) + " > " + quoted(log.string()) + " 2>&1";
  int rc = std::system(cmd.c_str());
  std::ostringstream msg;
  msg << std::ifstream(log).rdbuf();
  fs::remove_all(dir);
  if (rc != 0) {
    if (WIFEXITED(rc) && WEXITSTATUS(rc) == 127)
      throw std::runtime_error("gnuplot is not installed: run tools/setup.sh (or apt-get install gnuplot-nox)");
    throw std::runtime_error("gnuplot failed: " + msg.str());
  }
}

static const char* kHeader = "set terminal pngcairo size 1100,450 enhanced font 'Sans,10'\nset grid\nset key inside top right\n";

// Inline data block: "$name << EOD ... EOD".
static void data_block(std::ostringstream& os, const std::string& name, const std::vector<double>& x,
                       const std::vector<double>& y) {
  os << "$" << name << " << EOD\n";
  for (size_t i = 0; i < x.size() && i < y.size(); ++i)
    if (!std::isnan(y[i])) os << x[i] << " " << y[i] << "\n";
  os << "EOD\n";
}

void plot_training_curves(const std::vector<EpochMetrics>& h, const std::string& title, const std::string& png) {
  std::vector<double> ep, tl, ta, vl, va, sl, sa;
  for (auto& m : h) {
    ep.push_back(m.epoch);
    tl.push_back(m.train_loss), ta.push_back(m.train_acc);
    vl.push_back(m.val_loss), va.push_back(m.val_acc);
    sl.push_back(m.test_loss), sa.push_back(m.test_acc);
  }
  std::ostringstream os;
  os << kHeader;
  data_block(os, "tl", ep, tl), data_block(os, "ta", ep, ta), data_block(os, "vl", ep, vl);
  data_block(os, "va", ep, va), data_block(os, "sl", ep, sl), data_block(os, "sa", ep, sa);
  bool has_val = !h.empty() && !std::isnan(h.front().val_loss);
  bool has_test = !h.empty() && !std::isnan(h.front().test_loss);
  if (h.size() <= 20) os << "set xtics 1\n";
  os << "set output " << quoted(png) << "\nset multiplot layout 1,2 title " << quoted(title) << "\n";
  for (int panel = 0; panel < 2; ++panel) {
    const char* what = panel == 0 ? "loss" : "accuracy";
    os << "set xlabel 'epoch'\nset ylabel '" << what << "'\nplot $" << (panel ? "ta" : "tl")
       << " with linespoints lw 2 title 'train'";
    if (has_val) os << ", $" << (panel ? "va" : "vl") << " with linespoints lw 2 title 'validation'";
    if (has_test) os << ", $" << (panel ? "sa" : "sl") << " with linespoints lw 2 title 'test'";
    os << "\n";
  }
  os << "unset multiplot\n";
  run_gnuplot(os.str());
}

void plot_series(const std::vector<Series>& series, const std::string& title, const std::string& xlabel,
                 const std::string& ylabel, const std::string& png) {
  std::ostringstream os;
  os << "set terminal pngcairo size 800,500 enhanced font 'Sans,10'\nset grid\nset key outside right\n";
  for (size_t i = 0; i < series.size(); ++i) data_block(os, "s" + std::to_string(i), series[i].x, series[i].y);
  os << "set output " << quoted(png) << "\nset title " << quoted(title) << "\nset xlabel " << quoted(xlabel)
     << "\nset ylabel " << quoted(ylabel) << "\nplot ";
  for (size_t i = 0; i < series.size(); ++i)
    os << (i ? ", " : "") << "$s" << i << " with linespoints lw 2 title " << quoted(series[i].label);
  os << "\n";
  run_gnuplot(os.str());
}

void plot_confusion(const ConfusionMatrix& cm, const std::vector<std::string>& labels, const std::string& title,
                    const std::string& png) {
  int k = cm.classes();
  std::ostringstream os;
  os << "set terminal pngcairo size 700,620 enhanced font 'Sans,10'\nset output " << quoted(png) << "\n";
  os << "set title " << quoted(title) << "\nset xlabel 'predicted'\nset ylabel 'true'\n";
  os << "set xrange [-0.5:" << k - 0.5 << "]\nset yrange [" << k - 0.5 << ":-0.5]\nset palette defined (0 'white', 1 '#08519c')\n";
  os << "set cbrange [0:*]\nunset key\nset tics scale 0\n";
  auto tics = [&](const char* axis) {
    os << "set " << axis << " (";
    for (int i = 0; i < k; ++i)
      os << (i ? ", " : "") << quoted(i < static_cast<int>(labels.size()) ? labels[static_cast<size_t>(i)] : std::to_string(i)) << " " << i;
    os << ")\n";
  };
  tics("xtics");
  tics("ytics");
  os << "$m << EOD\n";
  int64_t max_count = 1;
  for (int i = 0; i < k; ++i)
    for (int j = 0; j < k; ++j) {
      os << j << " " << i << " " << cm.at(i, j) << "\n";
      max_count = std::max(max_count, cm.at(i, j));
    }
  os << "EOD\n";
  os << "plot $m using 1:2:3 with image, $m using 1:2:(sprintf('%d',$3)):($3 > " << max_count / 2
     << " ? 0 : 1) with labels tc palette font ',8'\n";
  run_gnuplot(os.str());
}

}  // namespace kiln::report
