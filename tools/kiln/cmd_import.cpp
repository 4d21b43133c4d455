// kiln import (ONNX -> kiln.graph/1 + params) and kiln onnx-test (the ONNX
// backend test suite).
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>

#include "tools/kiln/command.h"

#ifdef KILN_HAVE_ONNX
#include "compiler/frontend/graph_json.h"
#include "compiler/frontend/onnx/onnx_import.h"
#include "compiler/interp/value_io.h"
#include "runtime/data/npy.h"
#include "runtime/train/checkpoint.h"
#include "tools/kiln/onnx_suite.h"
#endif

namespace kiln::cli {

namespace fs = std::filesystem;

#ifdef KILN_HAVE_ONNX
namespace {

struct ImportCmd {
  std::string model, out_dir = ".", name;
  std::string loss, logits;  // --loss: make the graph trainable by kiln train
  bool nhwc_input = false;
};

// Renames every reference to a kiln node in the graph's nodes and outputs.
void rename_refs(nlohmann::json& g, const std::string& from, const std::string& to) {
  for (auto& n : g["nodes"])
    for (auto& in : n["inputs"])
      if (in == from) in = to;
  for (auto& [k, v] : g["outputs"].items())
    if (v == from) v = to;
}

// What kiln train needs of a model (compiler/driver/training_setup.cpp): the
// images in "x", the labels in "labels", outputs logits, loss and correct.
void make_trainable(nlohmann::json& g, const ImportCmd& o) {
  using json = nlohmann::json;
  if (!g.contains("inputs") || g["inputs"].size() != 1)
    throw InputError(o.model + ": --loss needs a model with one input (the images); it has " +
                     std::to_string(g.value("inputs", json::object()).size()));
  std::string in = g["inputs"].begin().key();
  json spec = g["inputs"][in];
  g["inputs"].erase(in);
  std::string logits = o.logits;
  if (logits.empty()) {
    if (g["outputs"].size() != 1) throw InputError(o.model + ": the model has several outputs: name the logits with --logits");
    logits = g["outputs"].begin().key();
  }
  if (!g["outputs"].contains(logits)) throw InputError(o.model + ": no output named '" + logits + "' (--logits)");
  std::string logits_node = g["outputs"][logits];
  json shape = spec["shape"];
  if (o.nhwc_input) {  // kiln's image sets are NHWC; the model reads NCHW
    if (shape.size() != 4) throw InputError("--nhwc-input needs a 4-D image input, '" + in + "' is " + shape.dump());
    json nhwc = {shape[0], shape[2], shape[3], shape[1]};
    spec["shape"] = nhwc;
    g["nodes"].insert(g["nodes"].begin(), json{{"name", "x_nchw"}, {"op", "transpose"}, {"inputs", {"x"}}, {"perm", {0, 3, 1, 2}},
                                               {"description", "NHWC images to the model's NCHW"}});
    rename_refs(g, in, "x_nchw");
    g["nodes"][0]["inputs"] = json::array({"x"});
  } else {
    rename_refs(g, in, "x");
  }
  g["inputs"]["x"] = spec;
  if (o.loss != "sparse_softmax_cross_entropy") throw InputError("--loss " + o.loss + ": kiln import adds sparse_softmax_cross_entropy (class labels)");
  // One label a row of the logits [N, classes] (N open, or static for a static model).
  Graph typed = parse_graph(g.dump(), o.model + " (imported)");
  Shape ls = typed.node(typed.output(logits)).type.shape;
  if (ls.size() != 2) throw InputError(o.model + ": --loss needs logits [N, classes]; '" + logits + "' is " + shape_str(ls));
  g["inputs"]["labels"] = json{{"shape", {ls[0]}}, {"dtype", "i32"}};
  g["nodes"].push_back({{"name", "loss"}, {"op", o.loss}, {"inputs", {logits_node, "labels"}}, {"description", "added by kiln import --loss"}});
  g["nodes"].push_back({{"name", "correct"}, {"op", "correct_count"}, {"inputs", {logits_node, "labels"}}});
  g["outputs"] = {{"logits", logits_node}, {"loss", "loss"}, {"correct", "correct"}};
}

void import_cmd(const ImportCmd& o) {
  onnx::ImportedModel im;
  try {
    im = onnx::import_file(o.model);
  } catch (const onnx::ImportError& e) {
    std::string msg = e.what();
    if (!e.needs_constant.empty()) {
      msg += "\n  (kiln compiles static shapes: ";
      for (auto& n : e.needs_constant) msg += "'" + n + "' ";
      msg += "must be constants or initializers in the model)";
    }
    throw InputError(msg);
  }
  std::string name = o.name.empty() ? fs::path(o.model).stem().string() : o.name;
  if (!o.loss.empty()) make_trainable(im.graph, o);
  // The graph must read back: kiln's own frontend checks what was written.
  Graph g = parse_graph(im.graph.dump(), o.model + " (imported)");
  fs::create_directories(o.out_dir);
  fs::path graph_path = fs::path(o.out_dir) / (name + ".json");
  fs::path params_dir = fs::path(o.out_dir) / (name + ".params");
  {
    std::ofstream f(graph_path);
    f << im.graph.dump(1) << "\n";
    if (!f) throw InputError(graph_path.string() + ": cannot write");
  }
  if (!im.params.empty()) {
    fs::create_directories(params_dir);
    for (auto& [pname, v] : im.params) {
      std::string file = pname;
      for (size_t at; (at = file.find('/')) != std::string::npos;) file.replace(at, 1, "__");
      data::write_npy((params_dir / (file + ".npy")).string(), interp::to_tensor(v));
    }
  }
  if (!im.params.empty()) {
    // The same values as a checkpoint, for a training spec's "init_from".
    train::Checkpoint ckpt;
    ckpt.graph_json = im.graph.dump();
    for (auto& [pname, v] : im.params) ckpt.params.push_back({pname, interp::to_tensor(v)});
    train::save_checkpoint((fs::path(o.out_dir) / (name + ".ckpt")).string(), ckpt);
  }
  int64_t values = 0;
  for (auto& [pname, v] : im.params) values += v.size();
  std::cout << "imported " << o.model << " (opset " << im.opset << "): " << g.nodes.size() << " kiln nodes, "
            << g.inputs().size() << " inputs, " << im.params.size() << " params (" << values << " values), "
            << g.outputs.size() << " outputs\n"
            << "  wrote " << graph_path.string() << "\n";
  if (!im.params.empty())
    std::cout << "  wrote " << params_dir.string() << "/ (one .npy per param)\n"
              << "  wrote " << (fs::path(o.out_dir) / (name + ".ckpt")).string() << " (the same, for a training spec's \"init_from\")\n"
              << "  run it: kiln run " << graph_path.string() << " --params " << params_dir.string()
              << " --input NAME=FILE.npy\n";
}

struct SuiteCmd {
  std::vector<std::string> paths;
  std::string report, expect_pass, write_passing, worker_list;
  SuiteOptions opts;
  bool verbose = false;
};

// A test folder holds model.onnx; a suite folder holds test folders.
std::vector<std::string> test_dirs(const std::vector<std::string>& paths) {
  std::vector<std::string> dirs;
  for (auto& p : paths) {
    if (!fs::is_directory(p)) throw InputError(p + ": not a folder (give test folders or suites of them)");
    if (fs::exists(fs::path(p) / "model.onnx")) {
      dirs.push_back(p);
      continue;
    }
    std::vector<std::string> found;
    for (auto& e : fs::directory_iterator(p))
      if (e.is_directory() && fs::exists(e.path() / "model.onnx")) found.push_back(e.path().string());
    if (found.empty()) throw InputError(p + ": holds no test folder (a folder with model.onnx)");
    std::sort(found.begin(), found.end());
    dirs.insert(dirs.end(), found.begin(), found.end());
  }
  return dirs;
}

std::set<std::string> read_list(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw InputError(path + ": cannot open");
  std::set<std::string> out;
  for (std::string line; std::getline(f, line);) {
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (!line.empty() && line[0] != '#') out.insert(line);
  }
  return out;
}

void worker(SuiteCmd o) {
  o.opts.read_tolerances();
  std::ifstream f(o.worker_list);
  for (std::string dir; std::getline(f, dir);) {
    if (dir.empty()) continue;
    ::alarm(static_cast<unsigned>(o.opts.timeout_s));  // a hung test kills this worker; the parent reports it
    SuiteTestResult r;
    try {
      r = run_suite_test(dir, o.opts);
    } catch (const std::exception& e) {
      r.test = suite_test_name(dir);
      r.status = "error";
      r.detail = e.what();
    }
    ::alarm(0);
    std::cout << "RESULT " << r.to_json().dump() << std::endl;
  }
}

std::string md_cell(std::string s) {
  for (char& ch : s)
    if (ch == '|' || ch == '\n') ch = ch == '|' ? '/' : ' ';
  return s.size() > 240 ? s.substr(0, 237) + "..." : s;
}

void suite_cmd(const SuiteCmd& o) {
  if (!o.worker_list.empty()) return worker(o);
  std::vector<std::string> dirs = test_dirs(o.paths);
  // Read before the run: --write-passing may rewrite the same file.
  std::set<std::string> expected;
  if (!o.expect_pass.empty()) expected = read_list(o.expect_pass);
  SuiteOptions checked = o.opts;
  try {
    checked.read_tolerances();  // a broken file is reported here, not by every worker
  } catch (const std::exception& e) {
    throw InputError(e.what());
  }
  std::string self = fs::read_symlink("/proc/self/exe").string();
  std::vector<SuiteTestResult> results = run_suite(dirs, o.opts, self, true);

  // Totals per suite and counts per op.
  std::map<std::string, std::map<std::string, int>> per_suite, per_op;
  for (auto& r : results) {
    std::string suite = r.test.substr(0, r.test.find('/'));
    per_suite[suite][r.status]++;
    per_suite[suite]["total"]++;
    for (auto& op : r.ops) per_op[op][r.status]++, per_op[op]["total"]++;
    if (o.verbose || r.status != "pass")
      std::cout << std::left << std::setw(12) << r.status << r.test << (r.detail.empty() ? "" : "  " + r.detail.substr(0, 300))
                << "\n";
  }
  const std::vector<std::string> kinds = {"pass", "mismatch", "unsupported", "error", "crash"};
  std::cout << "\n| suite | tests | pass | mismatch | unsupported | error | crash |\n|---|---|---|---|---|---|---|\n";
  for (auto& [suite, m] : per_suite) {
    std::cout << "| " << suite << " | " << m["total"];
    for (auto& k : kinds) std::cout << " | " << m[k];
    std::cout << " |\n";
  }
  if (!o.report.empty()) {
    std::ofstream f(o.report);
    f << "# ONNX backend tests\n\n| suite | tests | pass | mismatch | unsupported | error | crash |\n|---|---|---|---|---|---|---|\n";
    for (auto& [suite, m] : per_suite) {
      f << "| " << suite << " | " << m["total"];
      for (auto& k : kinds) f << " | " << m[k];
      f << " |\n";
    }
    f << "\n## Per op (tests whose model holds the op)\n\n| op | tests | pass | mismatch | unsupported | error | crash |\n|---|---|---|---|---|---|---|\n";
    for (auto& [op, m] : per_op) {
      f << "| " << op << " | " << m["total"];
      for (auto& k : kinds) f << " | " << m[k];
      f << " |\n";
    }
    f << "\n## Per test\n\n| test | JIT | interpreter | detail |\n|---|---|---|---|\n";
    for (auto& r : results) f << "| " << r.test << " | " << r.status << " | " << md_cell(r.interp) << " | " << md_cell(r.detail) << " |\n";
    std::cout << "wrote " << o.report << "\n";
  }
  if (!o.write_passing.empty()) {
    std::ofstream f(o.write_passing);
    f << "# ONNX backend tests that pass through kiln's JIT (kiln onnx-test --write-passing); CI fails when one stops passing\n";
    for (auto& r : results)
      if (r.status == "pass") f << r.test << "\n";
    std::cout << "wrote " << o.write_passing << "\n";
  }
  if (!o.expect_pass.empty()) {
    std::map<std::string, const SuiteTestResult*> by_name;
    for (auto& r : results) by_name[r.test] = &r;
    int lost = 0, ran = 0;
    for (auto& t : expected) {
      auto it = by_name.find(t);
      if (it == by_name.end()) continue;  // not in the folders given
      ++ran;
      if (it->second->status != "pass") {
        std::cout << "REGRESSION " << t << ": " << it->second->status << " " << it->second->detail.substr(0, 300) << "\n";
        ++lost;
      }
    }
    std::cout << ran - lost << " of the " << ran << " tests listed in " << o.expect_pass << " pass\n";
    if (lost) throw InputError(std::to_string(lost) + " test(s) that passed before fail now");
  }
}

}  // namespace
#endif

static RegisterCommand import_command(36, [](CLI::App& app) {
  auto* sub = app.add_subcommand("import", "Import an ONNX model: a kiln.graph/1 file and its initializers as params");
#ifdef KILN_HAVE_ONNX
  auto o = std::make_shared<ImportCmd>();
  sub->add_option("model", o->model, "the .onnx file")->required()->check(CLI::ExistingFile);
  sub->add_option("-o,--out", o->out_dir, "output folder (default: here): NAME.json and NAME.params/");
  sub->add_option("--name", o->name, "file name stem (default: the model file's)");
  sub->add_option("--loss", o->loss, "make it trainable by kiln train: input x, labels, outputs logits, loss, correct")
      ->check(CLI::IsMember({"sparse_softmax_cross_entropy"}));
  sub->add_option("--logits", o->logits, "with --loss: the output holding the logits (default: the only output)");
  sub->add_flag("--nhwc-input", o->nhwc_input, "with --loss: x is NHWC (kiln's image sets), transposed to the model's NCHW");
  sub->callback([o] { import_cmd(*o); });
#else
  sub->callback([] { throw InputError("this kiln was built without ONNX (install libonnx-dev libprotobuf-dev and rebuild)"); });
#endif
});

static RegisterCommand onnx_test_command(37, [](CLI::App& app) {
  auto* sub = app.add_subcommand("onnx-test", "Run ONNX backend tests: import, JIT, compare (the interpreter beside)");
#ifdef KILN_HAVE_ONNX
  auto o = std::make_shared<SuiteCmd>();
  sub->add_option("paths", o->paths, "test folders, or suite folders of them (e.g. /usr/share/libonnx-testdata/data/node)");
  sub->add_option("--report", o->report, "write the tables (per suite, per op, per test) as Markdown");
  sub->add_option("--expect-pass", o->expect_pass, "a list of tests that must pass (fails naming each that does not)");
  sub->add_option("--write-passing", o->write_passing, "write the list of passing tests");
  sub->add_option("--jobs,-j", o->opts.jobs, "worker processes (default 2)")->check(CLI::PositiveNumber);
  sub->add_option("--timeout", o->opts.timeout_s, "seconds per test before its worker is stopped (default 120)")->check(CLI::PositiveNumber);
  sub->add_option("--rtol", o->opts.rtol, "relative tolerance (default 1e-3, ONNX's)");
  sub->add_option("--atol", o->opts.atol, "absolute tolerance (default 1e-7, ONNX's)");
  sub->add_option("--tolerances", o->opts.tolerances, "known looser tolerances: 'suite/test rtol=R atol=A  # reason' lines")
      ->check(CLI::ExistingFile);
  sub->add_flag("--verbose,-v", o->verbose, "print passing tests too");
  sub->add_option("--worker-list", o->worker_list, "(internal) run the listed test folders in this process")->group("");
  sub->callback([o] {
    if (o->paths.empty() && o->worker_list.empty()) throw InputError("give test folders or suite folders");
    suite_cmd(*o);
  });
#else
  sub->callback([] { throw InputError("this kiln was built without ONNX (install libonnx-dev libprotobuf-dev and rebuild)"); });
#endif
});

}  // namespace kiln::cli
