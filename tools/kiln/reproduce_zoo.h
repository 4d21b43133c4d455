#pragma once
// kiln reproduce --zoo: the zoo's training runs (graphs/zoo/train/*.json),
// one child `kiln train` process per model (so each run's peak memory is its
// own), each resumable, each stamped with date, commit and host; with
// --twins, each model's PyTorch twin (tools/bench/zoo/twin.py) beside it; one
// report (REPORT.md) with both sides' final numbers, times and memory, the
// curves, and char_gpt's generated text.
#include <string>
#include <vector>

namespace kiln::cli {

struct ZooOptions {
  std::vector<std::string> only;  // model names; empty = every spec in the folder
  bool quick = false;             // subsets, kiln only unless --twins: a smoke run for CI
  bool twins = false;
  bool resume = false;            // keep finished runs, continue interrupted ones
  std::string out = "reports/zoo";
  std::string specs;              // default graphs/zoo/train
  int threads = 0;
};

// Returns the process exit code: 0 when every run finished with finite losses.
int reproduce_zoo(const ZooOptions& options);

}  // namespace kiln::cli
