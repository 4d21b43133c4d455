#include "runtime/report/progress.h"

#include <cmath>
#include <unistd.h>

namespace kiln::report {

Progress::Progress(std::string label, int64_t total, FILE* out)
    : label_(std::move(label)), total_(total), out_(out), interactive_(isatty(fileno(out)) != 0),
      start_(std::chrono::steady_clock::now()), last_draw_(start_ - std::chrono::seconds(1)) {}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Progress::format_duration(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%d:%02d", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  else std::snprintf(buf, sizeof buf, "%d:%02d:%02d", static_cast<int>(s) / 3600, static_cast<int>(s) / 60 % 60, static_cast<int>(s) % 60);
  return buf;
}

std::string Progress::render(int64_t done, int64_t samples, double loss) const {
  double frac = total_ > 0 ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
  double t = elapsed_seconds();
  const int width = 24;
  int filled = static_cast<int>(frac * width);
  std::string bar(static_cast<size_t>(filled), '=');
  if (filled < width) bar += '>' + std::string(static_cast<size_t>(width - filled - 1), ' ');
  char buf[256];
  double rate = t > 0 ? static_cast<double>(samples) / t : 0;
  double eta = done > 0 ? t * static_cast<double>(total_ - done) / static_cast<double>(done) : NAN;
  int n = std::snprintf(buf, sizeof buf, "%s [%s] %lld/%lld  %.0f samples/s  ETA %s", label_.c_str(), bar.c_str(),
                        static_cast<long long>(done), static_cast<long long>(total_), rate, format_duration(eta).c_str());
  if (!std::isnan(loss) && n > 0 && n < static_cast<int>(sizeof buf))
    std::snprintf(buf + n, sizeof buf - static_cast<size_t>(n), "  loss %.4f", loss);
  return buf;
}

void Progress::update(int64_t done, int64_t samples, double loss) {
  auto now = std::chrono::steady_clock::now();
  if (interactive_) {
    if (now - last_draw_ < std::chrono::milliseconds(100) && done < total_) return;
    last_draw_ = now;
    std::fprintf(out_, "\r%s\033[K", render(done, samples, loss).c_str());
    std::fflush(out_);
    return;
  }
  // Plain output: a line at every 10% step, so logs stay short.
  int decile = total_ > 0 ? static_cast<int>(10 * done / total_) : 10;
  if (decile == last_decile_) return;
  last_decile_ = decile;
  if (decile > 0 && decile < 10) std::fprintf(out_, "%s\n", render(done, samples, loss).c_str());
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (interactive_) std::fprintf(out_, "\r\033[K");
  std::fflush(out_);
}

}  // namespace kiln::report
