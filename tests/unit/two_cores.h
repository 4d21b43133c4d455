#pragma once
// For tests of the thread pool's pinning (Linux): a pool pins its workers only
// when it has a thread for every core the process may use, so a test keeps
// its thread to two cores while a two-thread pool lives, whatever the machine.
#include <sched.h>

#include <cstdlib>
#include <string>

namespace kiln::test {

class TwoCores {
 public:
  // Keeps this thread to the first two cores it may use (cpu[0], cpu[1]);
  // skip_reason says why pinning cannot be tested here (then nothing changed).
  TwoCores() {
    if (sched_getaffinity(0, sizeof original_, &original_) != 0) {
      skip_reason = "sched_getaffinity failed";
      return;
    }
    if (const char* pin = std::getenv("KILN_PIN_THREADS"); pin && std::string(pin) == "0") {
      skip_reason = "KILN_PIN_THREADS=0";
      return;
    }
    CPU_ZERO(&two);
    for (int c = 0, n = 0; c < CPU_SETSIZE && n < 2; ++c)
      if (CPU_ISSET(c, &original_)) CPU_SET(c, &two), cpu[n++] = c;
    if (cpu[1] < 0) {
      skip_reason = "this process may use one core";
      return;
    }
    if (sched_setaffinity(0, sizeof two, &two) != 0) skip_reason = "sched_setaffinity failed";
    else changed_ = true;
  }
  ~TwoCores() {
    if (changed_) sched_setaffinity(0, sizeof original_, &original_);
  }
  TwoCores(const TwoCores&) = delete;
  TwoCores& operator=(const TwoCores&) = delete;

  std::string skip_reason;
  int cpu[2] = {-1, -1};
  cpu_set_t two{};

 private:
  cpu_set_t original_{};
  bool changed_ = false;
};

}  // namespace kiln::test
