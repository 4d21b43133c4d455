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

// noenhanced: a title like "e4a_cnn" is printed as written, not with a subscript.
static const char* kHeader = "set termoption noenhanced\nset grid\nset key inside top right\n";

// Inline data block: "$name << EOD ... EOD".
static void data_block(std::ostringstream& os, const std::string& name, const std::vector<double>& x,
                       const std::vector<double>& y) {
  os << "$" << name << " << EOD\n";
  for (size_t i = 0; i < x.size() && i < y.size(); ++i)
    if (std::isfinite(y[i])) os << x[i] << " " << y[i] << "\n";
  os << "EOD\n";
}

static bool any_finite(const std::vector<double>& v) {
  for (double x : v)
    if (std::isfinite(x)) return true;
  return false;
}

// An exponential moving average with bias correction (TensorBoard's smoothing).
static std::vector<double> smoothed(const std::vector<double>& y, double weight) {
  std::vector<double> out;
  double avg = 0, norm = 0;
  for (double v : y) {
    avg = weight * avg + (1 - weight) * v;
    norm = weight * norm + (1 - weight);
    out.push_back(avg / norm);
  }
  return out;
}

// About a fortieth of the run in the average's window: a line that follows
// a 30-step run and calms a 3,000-step one.
static double smoothing_weight(size_t steps) {
  return std::min(0.99, 1.0 - 1.0 / std::max(2.0, static_cast<double>(steps) / 40.0));
}

// One panel: train and the evaluated sets that have values.
static void epoch_panel(std::ostringstream& os, const char* ylabel, const char* train, const char* val,
                        const char* test, bool has_val, bool has_test, size_t epochs) {
  os << "set xlabel 'epoch'\nset ylabel '" << ylabel << "'\n";
  // Integer epoch ticks: one per epoch up to 20, else gnuplot's, never fractions.
  os << (epochs <= 20 ? "set xtics 1\n" : "set xtics autofreq\nset format x '%.0f'\n");
  os << "set xrange [" << (epochs <= 1 ? 0.5 : 1) << ":" << (epochs <= 1 ? 1.5 : static_cast<double>(epochs)) << "]\n";
  os << "plot $" << train << " with linespoints lw 2 title 'train'";
  if (has_val) os << ", $" << val << " with linespoints lw 2 title 'validation'";
  if (has_test) os << ", $" << test << " with linespoints lw 2 title 'test'";
  os << "\n";
}

void plot_training_curves(const std::vector<EpochMetrics>& h, const std::string& title, const std::string& png,
                          const std::vector<StepPoint>& steps) {
  std::vector<double> ep, tl, ta, vl, va, sl, sa;
  for (auto& m : h) {
    ep.push_back(m.epoch);
    tl.push_back(m.train_loss), ta.push_back(m.train_acc);
    vl.push_back(m.val_loss), va.push_back(m.val_acc);
    sl.push_back(m.test_loss), sa.push_back(m.test_acc);
  }
  // Without accuracy (a language model), bits per character: loss / ln 2.
  const bool has_acc = any_finite(ta) || any_finite(va) || any_finite(sa);
  if (!has_acc)
    for (auto* v : {&ta, &va, &sa}) {
      const auto& from = v == &ta ? tl : v == &va ? vl : sl;
      v->clear();
      for (double x : from) v->push_back(x / std::log(2.0));
    }
  const bool with_steps = !steps.empty();
  std::ostringstream os;
  os << "set terminal pngcairo size 1100," << (with_steps ? 820 : 450) << " font 'Sans,10'\n" << kHeader;
  data_block(os, "tl", ep, tl), data_block(os, "ta", ep, ta), data_block(os, "vl", ep, vl);
  data_block(os, "va", ep, va), data_block(os, "sl", ep, sl), data_block(os, "sa", ep, sa);
  const bool has_val = any_finite(vl), has_test = any_finite(sl);
  os << "set output " << quoted(png) << "\nset multiplot layout " << (with_steps ? 2 : 1) << ",2 title " << quoted(title)
     << "\n";
  epoch_panel(os, "loss", "tl", "vl", "sl", has_val, has_test, h.size());
  epoch_panel(os, has_acc ? "accuracy" : "bits per character", "ta", "va", "sa", has_val, has_test, h.size());
  if (with_steps) {
    std::vector<double> x, loss, lr;
    for (const StepPoint& p : steps) x.push_back(static_cast<double>(p.step)), loss.push_back(p.loss), lr.push_back(p.lr);
    data_block(os, "raw", x, loss), data_block(os, "smooth", x, smoothed(loss, smoothing_weight(loss.size()))), data_block(os, "lr", x, lr);
    os << "set xlabel 'step'\nset xtics autofreq\nset format x '%.0f'\nset autoscale x\n";
    os << "set ylabel 'training loss'\nplot $raw with lines lc rgb '#c6dbef' title 'per step', "
          "$smooth with lines lw 2 lc rgb '#08519c' title 'smoothed'\n";
    os << "set ylabel 'learning rate'\nset format y '%g'\nplot $lr with lines lw 2 lc rgb '#d94801' title 'learning rate'\n";
  }
  os << "unset multiplot\n";
  run_gnuplot(os.str());
}

void plot_series(const std::vector<Series>& series, const std::string& title, const std::string& xlabel,
                 const std::string& ylabel, const std::string& png) {
  std::ostringstream os;
  os << "set terminal pngcairo size 800,500 noenhanced font 'Sans,10'\nset grid\nset key outside right\n";
  for (size_t i = 0; i < series.size(); ++i) data_block(os, "s" + std::to_string(i), series[i].x, series[i].y);
  if (xlabel == "epoch") os << "set format x '%.0f'\n";  // whole epochs only
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
  os << "set terminal pngcairo size 760,680 noenhanced font 'Sans,10'\nset output " << quoted(png) << "\n";
  os << "set title " << quoted(title) << "\nset xlabel 'predicted'\nset ylabel 'true'\n";
  os << "set xrange [-0.5:" << k - 0.5 << "]\nset yrange [" << k - 0.5 << ":-0.5]\nset palette defined (0 'white', 1 '#08519c')\n";
  os << "set cbrange [0:*]\nunset key\nset tics scale 0\nset xtics rotate by 35 right\n";
  auto tics = [&](const char* axis) {
    os << "set " << axis << " (";
    for (int i = 0; i < k; ++i)
      os << (i ? ", " : "") << quoted(i < static_cast<int>(labels.size()) ? labels[static_cast<size_t>(i)] : std::to_string(i)) << " " << i;
    os << ")\n";
  };
  tics("xtics");
  tics("ytics");
  int64_t max_count = 1;
  for (int i = 0; i < k; ++i)
    for (int j = 0; j < k; ++j) max_count = std::max(max_count, cm.at(i, j));
  os << "$m << EOD\n";
  for (int i = 0; i < k; ++i)
    for (int j = 0; j < k; ++j) os << j << " " << i << " " << cm.at(i, j) << "\n";
  os << "EOD\n";
  // Counts in black on light cells, white on dark ones (the fill passes
  // mid-blue at about 45% of the largest count): readable everywhere.
  const double dark = 0.45 * static_cast<double>(max_count);
  os << "plot $m using 1:2:3 with image, "
     << "$m using 1:2:($3 > " << dark << " ? sprintf('%d', $3) : '') with labels tc rgb 'white' font ',9', "
     << "$m using 1:2:($3 <= " << dark << " ? sprintf('%d', $3) : '') with labels tc rgb 'black' font ',9'\n";
  run_gnuplot(os.str());
}

}  // namespace kiln::report
