#pragma once
// The Loop IR verifier and the named Loop IR passes that run after lowering,
// verified after each and printable after each (`kiln ir --stage loops
// --dump-after-each`), as the graph passes are.
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "compiler/lower/loop_ir.h"

namespace kiln::lower {

// Every problem found, each naming its kernel: buffer, loop-variable and
// local ids in range and in scope, index expressions i64, stored values of
// their buffer's type, parallel loops only at the top, gemm operands of one
// float type, entries' kernels in range.
std::vector<std::string> verify_program(const Program& p);
// Throws std::logic_error listing the problems, naming `after` (a pass).
void verify_program_or_throw(const Program& p, const std::string& after);

struct LoopPass {
  std::string name;      // "fuse-gemm-epilogues", "fuse-row-epilogues", "split-reductions", "plan-memory"
  std::string contract;  // one line: what it guarantees (printed by the dump)
  std::function<void(Program&, std::vector<std::string>* why)> run;
};
const std::vector<LoopPass>& loop_passes();

struct LoopPipelineOptions {
  bool fuse = true;                  // false: the fuse-* passes are skipped
  std::vector<std::string> skip;     // passes skipped by name
  std::vector<std::string>* why = nullptr;
  std::ostream* dump = nullptr;      // after each pass: its name, contract and the program
};
// Runs every loop pass in order, verifying the program after each.
void run_loop_passes(Program& p, const LoopPipelineOptions& options);

}  // namespace kiln::lower
