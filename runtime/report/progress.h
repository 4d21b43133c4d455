#pragma once
// Progress of long work: a live bar on a terminal (batches, samples/s, ETA,
// running loss), occasional plain lines otherwise (logs, CI).
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

namespace kiln::report {

class Progress {
 public:
  // total: units of work (e.g. batches); samples_per_unit only for the rate display.
  Progress(std::string label, int64_t total, FILE* out = stderr);
  // Whether to draw a live bar; defaults to isatty(out).
  void set_interactive(bool on) { interactive_ = on; }
  // Advances to `done` units, `samples` processed so far, with an optional running value (loss).
  void update(int64_t done, int64_t samples, double running_loss = NAN);
  void finish();                    // final line / newline
  double elapsed_seconds() const;
  // "1:05" / "12.3s" style, for ETAs.
  static std::string format_duration(double seconds);
  // The text of the bar as it would be drawn (exposed for tests).
  std::string render(int64_t done, int64_t samples, double running_loss) const;

 private:
  std::string label_;
  int64_t total_;
  FILE* out_;
  bool interactive_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int last_decile_ = -1;
  bool finished_ = false;
};

}  // namespace kiln::report
