#pragma once
// The ONNX backend test suite as kiln's measure of ONNX coverage: each test
// folder (model.onnx + test_data_set_*/{input,output}_*.pb) is imported,
// compiled through the JIT, run on every data set and compared with the
// expected outputs; the reference interpreter runs the same graph beside it.
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kiln::cli {

struct SuiteTestResult {
  std::string test;    // "<suite>/<test>", e.g. "node/test_abs"
  std::string status;  // pass | mismatch | unsupported | error | crash
  std::string detail;  // the reason, or the largest error
  std::string interp;  // the interpreter's status beside it (pass | mismatch | error)
  std::vector<std::string> ops;  // the model's op types
  double max_error = 0;
  nlohmann::json to_json() const;
  static SuiteTestResult from_json(const nlohmann::json& j);
};

struct SuiteOptions {
  double rtol = 1e-3, atol = 1e-7;
  int jobs = 2;                 // worker processes
  int timeout_s = 120;          // per test, in a worker
  // Known looser tolerances: a file of "suite/test rtol=R atol=A  # reason" lines.
  std::string tolerances;
  struct Tolerance {
    double rtol, atol;
  };
  std::map<std::string, Tolerance> per_test;  // read from `tolerances`
  void read_tolerances();                     // throws std::runtime_error naming the line
};

// One test folder, in this process.
SuiteTestResult run_suite_test(const std::string& dir, const SuiteOptions& o);

// Every folder, in worker processes (`kiln onnx-test --worker-list FILE`):
// a test that crashes or hangs its worker is reported as such and the rest go on.
std::vector<SuiteTestResult> run_suite(const std::vector<std::string>& dirs, const SuiteOptions& o,
                                       const std::string& self_exe, bool progress);

// "node/test_abs" from ".../data/node/test_abs".
std::string suite_test_name(const std::string& dir);

}  // namespace kiln::cli
