// The ONNX backend test runner: one test in this process (run_suite_test),
// or a whole suite over worker processes (run_suite).
#include "tools/kiln/onnx_suite.h"

#ifdef KILN_HAVE_ONNX

#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "compiler/codegen/jit.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/frontend/onnx/onnx_import.h"
#include "compiler/passes/modes.h"
#include "onnx/onnx_pb.h"

namespace kiln::cli {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Values = std::map<std::string, interp::Value>;

json SuiteTestResult::to_json() const {
  return {{"test", test}, {"status", status}, {"detail", detail}, {"interp", interp}, {"ops", ops}, {"max_error", max_error}};
}

SuiteTestResult SuiteTestResult::from_json(const json& j) {
  SuiteTestResult r;
  r.test = j.value("test", "");
  r.status = j.value("status", "");
  r.detail = j.value("detail", "");
  r.interp = j.value("interp", "");
  r.ops = j.value("ops", std::vector<std::string>{});
  r.max_error = j.value("max_error", 0.0);
  return r;
}

std::string suite_test_name(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.parent_path().filename().string() + "/" + p.filename().string();
}

namespace {

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error(p.string() + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// input_0.pb, input_1.pb, ... in numeric order.
std::vector<fs::path> numbered(const fs::path& dir, const std::string& prefix) {
  std::vector<std::pair<int, fs::path>> found;
  for (auto& e : fs::directory_iterator(dir)) {
    std::string n = e.path().filename().string();
    if (n.rfind(prefix, 0) == 0 && e.path().extension() == ".pb")
      found.push_back({std::atoi(n.c_str() + prefix.size()), e.path()});
  }
  std::sort(found.begin(), found.end());
  std::vector<fs::path> out;
  for (auto& [i, p] : found) out.push_back(p);
  return out;
}

struct Compared {
  bool ok = true;
  double max_error = 0;
  std::string why;
};

Compared compare(const interp::Value& want, const interp::Value& got, const std::string& name, double rtol, double atol) {
  Compared c;
  if (want.shape != got.shape) {
    c.ok = false;
    c.why = name + ": shape " + shape_str(got.shape) + ", expected " + shape_str(want.shape);
    return c;
  }
  if (want.dtype != got.dtype) {
    c.ok = false;
    c.why = name + ": dtype " + std::string(dtype_name(got.dtype)) + ", expected " + std::string(dtype_name(want.dtype));
    return c;
  }
  for (size_t i = 0; i < want.data.size(); ++i) {
    double w = want.data[i], g = got.data[i];
    if (std::isnan(w) || std::isnan(g)) {
      if (std::isnan(w) != std::isnan(g)) c.ok = false, c.max_error = INFINITY;
      continue;
    }
    if (w == g) continue;  // equal infinities too
    double err = std::abs(w - g);
    if (!(err <= atol + rtol * std::abs(w))) c.ok = false;
    c.max_error = std::max(c.max_error, std::isnan(err) ? INFINITY : err);
  }
  if (!c.ok) {
    std::ostringstream os;
    os << name << ": max error " << c.max_error;
    c.why = os.str();
  }
  return c;
}

std::string join_problems(const onnx::ImportError& e) {
  std::string s;
  for (auto& p : e.problems) s += (s.empty() ? "" : "; ") + p.str();
  return s;
}

struct DataSet {
  Values inputs;  // by graph input name
  std::vector<interp::Value> outputs;
};

}  // namespace

void SuiteOptions::read_tolerances() {
  if (tolerances.empty()) return;
  std::ifstream f(tolerances);
  if (!f) throw std::runtime_error(tolerances + ": cannot open");
  int line_no = 0;
  for (std::string line; std::getline(f, line);) {
    ++line_no;
    line = line.substr(0, line.find('#'));
    std::istringstream in(line);
    std::string test, field;
    if (!(in >> test)) continue;
    Tolerance t{rtol, atol};
    while (in >> field) {
      size_t eq = field.find('=');
      std::string key = field.substr(0, eq);
      if (eq == std::string::npos || (key != "rtol" && key != "atol"))
        throw std::runtime_error(tolerances + ":" + std::to_string(line_no) + ": expected rtol=R or atol=A, got '" + field + "'");
      (key == "rtol" ? t.rtol : t.atol) = std::stod(field.substr(eq + 1));
    }
    per_test[test] = t;
  }
}

SuiteTestResult run_suite_test(const std::string& dir, const SuiteOptions& opts) {
  SuiteTestResult r;
  r.test = suite_test_name(dir);
  SuiteOptions o = opts;
  if (auto it = opts.per_test.find(r.test); it != opts.per_test.end()) o.rtol = it->second.rtol, o.atol = it->second.atol;
  std::string bytes;
  ::onnx::ModelProto model;
  std::vector<std::string> graph_inputs;
  std::vector<DataSet> sets;
  try {
    bytes = read_bytes(fs::path(dir) / "model.onnx");
    if (model.ParseFromString(bytes)) {
      std::set<std::string> ops, inits;
      for (auto& n : model.graph().node()) ops.insert(n.op_type());
      r.ops.assign(ops.begin(), ops.end());
      for (auto& t : model.graph().initializer()) inits.insert(t.name());
      for (auto& in : model.graph().input())
        if (!inits.count(in.name())) graph_inputs.push_back(in.name());
    }
    std::vector<fs::path> set_dirs;
    for (auto& e : fs::directory_iterator(dir))
      if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) set_dirs.push_back(e.path());
    std::sort(set_dirs.begin(), set_dirs.end());
    for (auto& sd : set_dirs) {
      DataSet ds;
      auto ins = numbered(sd, "input_");
      for (size_t k = 0; k < ins.size(); ++k) {
        std::string name;
        interp::Value v = onnx::read_tensor_file(ins[k].string(), &name);
        if (k < graph_inputs.size()) name = graph_inputs[k];  // inputs are fed in the graph's order
        ds.inputs[name] = std::move(v);
      }
      for (auto& p : numbered(sd, "output_")) ds.outputs.push_back(onnx::read_tensor_file(p.string()));
      sets.push_back(std::move(ds));
    }
  } catch (const std::exception& e) {
    r.status = "unsupported";
    r.detail = std::string("test data: ") + e.what();
    return r;
  }
  if (sets.empty()) {
    r.status = "error";
    r.detail = "no test_data_set_* folder";
    return r;
  }

  std::string jit_fail, interp_fail;
  for (size_t s = 0; s < sets.size(); ++s) {
    DataSet& ds = sets[s];
    onnx::ImportedModel im;
    onnx::ImportOptions opts;
    try {
      // Inputs that set a shape, axes or pads become constants of this data
      // set, as the importer asks for them (one node's need at a time).
      for (int attempt = 0;; ++attempt) {
        try {
          im = onnx::import_model(bytes, r.test, opts);
          break;
        } catch (const onnx::ImportError& e) {
          bool more = false;
          for (auto& name : e.needs_constant)
            if (ds.inputs.count(name) && !opts.bind.count(name)) opts.bind[name] = ds.inputs.at(name), more = true;
          if (!more || attempt > 16) throw;
        }
      }
    } catch (const onnx::ImportError& e) {
      bool invalid = std::any_of(e.problems.begin(), e.problems.end(), [](auto& p) { return p.kind == "invalid"; });
      r.status = invalid ? "error" : "unsupported";
      r.detail = join_problems(e);
      return r;
    }
    Graph g;
    try {
      g = parse_graph(im.graph.dump(), r.test + " (imported)");
    } catch (const std::exception& e) {
      r.status = "error";
      r.detail = std::string("kiln's frontend refuses the imported graph: ") + e.what();
      return r;
    }
    Values feeds = im.params;
    for (NodeId id : g.inputs()) {
      const Node& n = g.node(id);
      auto it = ds.inputs.find(n.name);
      if (it == ds.inputs.end()) {
        r.status = "error";
        r.detail = "the test data has no value for input '" + n.name + "'";
        return r;
      }
      feeds[n.name] = it->second;
    }
    if (ds.outputs.size() > im.output_names.size()) {
      r.status = "error";
      r.detail = "more expected outputs than the model has";
      return r;
    }
    Graph reference = g;
    specialize_mode(reference, {Mode::infer});
    std::vector<std::string> outs;
    for (auto& [name, id] : g.outputs) outs.push_back(name);
    // The first output that differs from the expected ones ("" when none does).
    auto first_difference = [&](const Values& got, double* max_error) {
      for (size_t k = 0; k < ds.outputs.size(); ++k) {
        Compared c = compare(ds.outputs[k], got.at(im.output_names[k]), im.output_names[k], o.rtol, o.atol);
        if (max_error) *max_error = std::max(*max_error, c.max_error);
        if (!c.ok) return c.why;
      }
      return std::string();
    };
    // The JIT.
    try {
      Values got = codegen::run_forward(reference, feeds, outs);
      if (jit_fail.empty()) jit_fail = first_difference(got, &r.max_error);
    } catch (const std::exception& e) {
      r.status = "error";
      r.detail = std::string("JIT: ") + e.what();
      return r;
    }
    // The interpreter, beside it.
    try {
      Values got = interp::Interpreter(reference).run(feeds);
      if (interp_fail.empty()) interp_fail = first_difference(got, nullptr);
    } catch (const std::exception& e) {
      if (interp_fail.empty()) interp_fail = std::string("error: ") + e.what();
    }
  }
  r.status = jit_fail.empty() ? "pass" : "mismatch";
  r.detail = jit_fail;
  r.interp = interp_fail.empty() ? "pass" : interp_fail.rfind("error", 0) == 0 ? interp_fail : "mismatch (" + interp_fail + ")";
  return r;
}

std::vector<SuiteTestResult> run_suite(const std::vector<std::string>& dirs, const SuiteOptions& o,
                                       const std::string& self_exe, bool progress) {
  std::vector<SuiteTestResult> results(dirs.size());
  std::mutex mu;
  size_t done = 0;
  int jobs = std::max(1, std::min<int>(o.jobs, static_cast<int>(dirs.size())));
  auto worker = [&](int w) {
    std::vector<size_t> remaining;
    for (size_t i = static_cast<size_t>(w); i < dirs.size(); i += static_cast<size_t>(jobs)) remaining.push_back(i);
    while (!remaining.empty()) {
      fs::path list = fs::temp_directory_path() / ("kiln-onnx-suite-" + std::to_string(::getpid()) + "-" + std::to_string(w));
      {
        std::ofstream f(list);
        for (size_t i : remaining) f << dirs[i] << "\n";
      }
      char tol[96];  // %g keeps 1e-7 (std::to_string would print 0.000000)
      std::snprintf(tol, sizeof tol, " --rtol %.17g --atol %.17g", o.rtol, o.atol);
      std::string cmd = "'" + self_exe + "' onnx-test --worker-list '" + list.string() + "' --timeout " +
                        std::to_string(o.timeout_s) + tol + (o.tolerances.empty() ? "" : " --tolerances '" + o.tolerances + "'") +
                        " 2>'" + list.string() + ".err'";
      FILE* p = ::popen(cmd.c_str(), "r");
      if (!p) throw std::runtime_error("cannot start a worker: " + cmd);
      char* line = nullptr;
      size_t cap = 0;
      size_t next = 0;
      while (next < remaining.size() && ::getline(&line, &cap, p) > 0) {
        std::string s(line);
        if (s.rfind("RESULT ", 0) != 0) continue;
        SuiteTestResult r = SuiteTestResult::from_json(json::parse(s.substr(7)));
        std::lock_guard<std::mutex> lock(mu);
        results[remaining[next++]] = r;
        ++done;
        if (progress && done % 50 == 0) std::cerr << "onnx-test: " << done << "/" << dirs.size() << " tests\n";
      }
      std::free(line);
      int status = ::pclose(p);
      std::string err_tail;  // what the worker said last, for the report
      {
        std::ifstream err(list.string() + ".err");
        std::string all((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
        err_tail = all.size() > 400 ? all.substr(all.size() - 400) : all;
        for (char& ch : err_tail)
          if (ch == '\n') ch = ' ';
      }
      fs::remove(list);
      fs::remove(list.string() + ".err");
      if (next < remaining.size()) {  // the worker died on this test
        SuiteTestResult& r = results[remaining[next]];
        r.test = suite_test_name(dirs[remaining[next]]);
        r.status = "crash";
        std::string how = WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status))
                                              : "exited with status " + std::to_string(WEXITSTATUS(status));
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) how = "ran past " + std::to_string(o.timeout_s) + " s";
        r.detail = "the worker process " + how + " on this test" + (err_tail.empty() ? "" : ": " + err_tail);
        ++next;
      }
      remaining.erase(remaining.begin(), remaining.begin() + static_cast<std::ptrdiff_t>(next));
    }
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < jobs; ++w) threads.emplace_back(worker, w);
  for (auto& t : threads) t.join();
  return results;
}

}  // namespace kiln::cli

#endif  // KILN_HAVE_ONNX
