// kiln run: one forward pass of a graph through the reference interpreter,
// on inputs read from .npy files, with freshly drawn or saved params.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "compiler/codegen/jit.h"
#include "compiler/interp/interpreter.h"
#include "compiler/passes/modes.h"
#include "compiler/interp/value_io.h"
#include "runtime/data/npy.h"
#include "runtime/thread_pool.h"
#include "tools/kiln/command.h"

namespace kiln::cli {

Graph load_graph_or_fail(const std::string& path);

namespace {


// Does a file's element type fit a graph dtype? Same class: float for float,
// integer (or bool) for integer, bool for bool.
bool fits(ElemType have, DType want) {
  bool have_float = have == ElemType::f32 || have == ElemType::f64;
  if (is_float(want)) return have_float;
  if (want == DType::boolean) return have == ElemType::boolean;
  return !have_float;
}

// Reads a .npy file as the value for node `node_name` of graph g.
interp::Value read_value(const Graph& g, const std::string& node_name, const std::string& path) {
  const Node& n = g.node(g.find(node_name));
  Tensor t;
  try {
    t = data::read_npy(path);
  } catch (const std::exception& e) {
    throw InputError(e.what());
  }
  if (!fits(t.dtype(), n.type.dtype))
    throw InputError(path + ": " + n.op + " '" + n.name + "' expects " + type_str(n.type) + ", the file holds " +
                     elem_type_name(t.dtype()) + shape_str(t.shape()));
  interp::Value v = interp::to_value(t);
  v.dtype = n.type.dtype;
  return v;
}

std::string file_name_of(const std::string& param) {
  std::string s = param;
  for (size_t at; (at = s.find('/')) != std::string::npos;) s.replace(at, 1, "__");
  return s + ".npy";
}

// "f32[] = 2.38" for a scalar; the first few values and the range otherwise.
std::string describe_value(const interp::Value& v, size_t count) {
  std::ostringstream os;
  os << std::setprecision(6) << type_str(TensorType{v.dtype, v.shape}) << " = ";
  if (v.shape.empty() && v.data.size() == 1) {
    os << v.data[0];
  } else {
    os << "[";
    for (size_t i = 0; i < std::min(count, v.data.size()); ++i) os << (i ? ", " : "") << v.data[i];
    if (v.data.size() > count) os << ", ...";
    os << "]";
    if (!v.data.empty())
      os << "  min " << *std::min_element(v.data.begin(), v.data.end()) << ", max "
         << *std::max_element(v.data.begin(), v.data.end());
  }
  if (!std::all_of(v.data.begin(), v.data.end(), [](double x) { return std::isfinite(x); }))
    os << "  (holds non-finite values)";
  return os.str();
}

struct RunOptions {
  std::string graph;
  std::vector<std::string> inputs;
  std::vector<std::string> fetch;
  std::string params_dir, output_dir;
  bool f64 = false, jit = false;
  int64_t seed = -1;
  int time_calls = 0, threads = 0;
  std::string slice = "auto";
};

// --time N: the forward pass compiled once (as run_forward does, with a
// thread pool), called once untimed (it also loads the params and computes
// what depends on them alone), then N times on the same input bytes. Each
// call is timed alone: the entry point's whole work, nothing of the
// conversions around it. Before the timed calls the batch may be set to run
// in slices (`slice`: "auto" tunes it where rows are independent, "whole",
// or a number of samples a call). Returns the outputs of a call in the timed
// configuration, after checking they are the warm-up's to the bit.
std::map<std::string, interp::Value> time_forward(const Graph& g, const std::map<std::string, interp::Value>& feeds,
                                                  const std::vector<std::string>& fetch, int calls, int threads,
                                                  const std::string& slice) {
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  codegen::ForwardProgram f = codegen::compile_forward(g, feeds, fetch);
  const double compile_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  const int64_t batch = f.batch;
  ThreadPool pool(threads);
  Program prog(f.program->info(), &pool);
  auto results = codegen::run_entry(prog, "eval_step", batch, feeds);  // the warm-up call
  const EntryInfo* e = prog.entry("eval_step");
  std::vector<std::vector<uint8_t>> in_bytes, out_bytes;
  std::vector<const void*> ins;
  std::vector<void*> outs;
  for (const TensorInfo& t : e->inputs) ins.push_back(in_bytes.emplace_back(codegen::to_bytes(feeds.at(t.name), static_cast<DType>(t.type))).data());
  for (const TensorInfo& t : e->outputs) outs.push_back(out_bytes.emplace_back(static_cast<size_t>(t.bytes(batch)) + 1).data());
  if (slice == "auto" && batch > 1) {
    if (!e->rows_mixed.empty()) {
      std::printf("batch slices: none (the batch runs whole: %s)\n", e->rows_mixed.c_str());
    } else {
      std::string tried;
      for (const Program::SliceTime& t : prog.tune_batch_slice("eval_step", batch, ins, outs))
        tried += (tried.empty() ? "" : ", ") + (t.rows == batch ? std::string("whole") : std::to_string(t.rows)) +
                 (t.finished ? " " : " > ") + std::to_string(static_cast<int>(t.ms + 0.5)) + " ms";
      const int64_t rows = prog.batch_slice("eval_step");
      std::printf("batch slices: %s (tuned, the faster of two calls each: %s)\n",
                  rows == 0 ? "none, the batch runs whole" : (std::to_string(rows) + (rows == 1 ? " sample a call" : " samples a call")).c_str(), tried.c_str());
    }
  } else if (slice != "auto" && slice != "whole") {
    const int64_t rows = std::stoll(slice);
    prog.set_batch_slice("eval_step", rows);
    if (rows < batch) std::printf("batch slices: %lld sample%s a call\n", static_cast<long long>(rows), rows == 1 ? "" : "s");
    else std::printf("batch slices: none (--slice %lld is not below the batch, %lld)\n", static_cast<long long>(rows),
                     static_cast<long long>(batch));
  }
  std::vector<double> ms;
  for (int i = 0; i < calls; ++i) {
    auto start = Clock::now();
    prog.run("eval_step", batch, ins, outs);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  const double median = n % 2 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
  std::printf("timed: batch %lld, %d thread%s: median %.3f ms per call over %d calls (min %.3f, max %.3f); "
              "compiled in %.0f ms\n",
              static_cast<long long>(batch), pool.threads(), pool.threads() == 1 ? "" : "s", median, calls, ms.front(),
              ms.back(), compile_ms);
  std::fflush(stdout);
  auto timed = codegen::run_entry(prog, "eval_step", batch, feeds);
  for (auto& [name, v] : timed)
    if (v.data != results.at(name).data)  // (NaN outputs would differ here too: compare their bits)
      for (size_t i = 0; i < v.data.size(); ++i)
        if (std::memcmp(&v.data[i], &results.at(name).data[i], sizeof(double)) != 0)
          throw std::runtime_error("output '" + name + "' of the timed calls differs from the warm-up's at element " +
                                   std::to_string(i) + ": batch slices must give the same bits (a bug; --slice whole avoids it)");
  return timed;
}

void run_graph(const RunOptions& o) {
  Graph g = load_graph_or_fail(o.graph);
  specialize_mode(g, {Mode::infer});  // a forward pass: running statistics, no dropout
  std::map<std::string, interp::Value> feeds;
  std::map<std::string, std::string> file_of;  // node -> the file that fed it, for located errors
  for (const std::string& spec : o.inputs) {
    size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
      throw InputError("--input '" + spec + "': expected NAME=FILE.npy");
    std::string name = spec.substr(0, eq), path = spec.substr(eq + 1);
    NodeId id = g.find(name);
    if (id == kNoNode || g.node(id).op != "input") {
      std::string known;
      for (NodeId in : g.inputs()) known += (known.empty() ? "" : ", ") + g.node(in).name;
      throw InputError("--input " + name + ": graph '" + g.name + "' has no input named '" + name + "' (inputs: " +
                       known + ")");
    }
    feeds[name] = read_value(g, name, path);
    file_of[name] = path;
  }
  if (!o.params_dir.empty()) {
    if (!std::filesystem::is_directory(o.params_dir))
      throw InputError("--params " + o.params_dir + ": not a directory of NAME.npy files (one per param, '/' in a name written as '__')");
    for (NodeId id : g.params()) {
      std::string name = g.node(id).name;
      std::string path = (std::filesystem::path(o.params_dir) / file_name_of(name)).string();
      if (!std::filesystem::exists(path)) throw InputError(path + ": missing (the value of param '" + name + "')");
      feeds[name] = read_value(g, name, path);
      file_of[name] = path;
    }
  } else {
    auto drawn = o.seed >= 0 ? interp::init_params(g, static_cast<uint64_t>(o.seed)) : interp::init_params(g);
    feeds.insert(drawn.begin(), drawn.end());
  }

  // By default, every output whose inputs were all fed; name what the others need.
  std::vector<std::string> fetch = o.fetch;
  if (fetch.empty()) {
    for (auto& [out, node] : g.outputs) {
      std::string missing;
      for (auto& in : interp::inputs_needed(g, {out}))
        if (!feeds.count(in)) missing += (missing.empty() ? "" : ", ") + in;
      if (missing.empty()) fetch.push_back(out);
      else std::cout << "skipping output '" << out << "': it needs input " << missing << " (--input NAME=FILE.npy)\n";
    }
    if (fetch.empty()) throw InputError("no output of graph '" + g.name + "' can be computed from the inputs given");
  }

  std::map<std::string, interp::Value> results;
  try {
    if (o.time_calls > 0) {
      results = time_forward(g, feeds, fetch, o.time_calls,
                             o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())),
                             o.slice);
    } else if (o.jit) {
      results = codegen::run_forward(g, feeds, fetch);
    } else {
      interp::Interpreter run(g, o.f64 ? interp::Precision::f64 : interp::Precision::f32);
      results = run.run(feeds, fetch);
    }
  } catch (const std::runtime_error& e) {
    std::string msg = e.what();
    for (auto& [node, path] : file_of)  // a feed problem ("input 'x': ..."): name the file it came from
      if (msg.rfind("input '" + node + "':", 0) == 0 || msg.rfind("param '" + node + "':", 0) == 0) {
        msg = path + ": " + msg;
        break;
      }
    throw InputError(msg);
  }
  if (!o.output_dir.empty()) std::filesystem::create_directories(o.output_dir);
  for (const std::string& name : fetch) {
    interp::Value& v = results.at(name);
    if (o.f64 && v.dtype == DType::f32) v.dtype = DType::f64;  // keep the unrounded values
    std::cout << name << ": " << describe_value(v, 6) << "\n";
    if (!o.output_dir.empty()) {
      std::string path = (std::filesystem::path(o.output_dir) / file_name_of(name)).string();
      data::write_npy(path, interp::to_tensor(v));
      std::cout << "  wrote " << path << "\n";
    }
  }
}

}  // namespace

static RegisterCommand run_cmd(30, [](CLI::App& app) {
  auto* sub = app.add_subcommand("run", "Run a forward pass through the reference interpreter (or the JIT) on inputs from .npy files");
  auto o = std::make_shared<RunOptions>();
  sub->add_option("graph", o->graph, "graph JSON file")->required()->check(CLI::ExistingFile);
  sub->add_option("--input,-i", o->inputs, "NAME=FILE.npy for each input the outputs need");
  sub->add_option("--fetch", o->fetch, "outputs or node names to compute (default: every output whose inputs are given)");
  sub->add_option("--params", o->params_dir,
                  "directory of NAME.npy param values ('/' in a name written as '__'); default: drawn from the initializers");
  sub->add_option("--output,-o", o->output_dir, "write NAME.npy for each computed output into this directory");
  sub->add_flag("--jit", o->jit, "compile through the JIT and run that (default: the reference interpreter)");
  sub->add_flag("--f64", o->f64, "compute in f64 (no rounding to float after each op; f32 outputs written as float64)");
  sub->add_option("--seed", o->seed, "re-derive every param's initializer seed from this graph seed")->check(CLI::NonNegativeNumber);
  auto* time = sub->add_option("--time", o->time_calls,
                               "with --jit: compile once, call once untimed, then time N calls and print their median")
                   ->check(CLI::Range(1, 100000));
  sub->add_option("--threads", o->threads, "with --time: worker threads (default: every core)")->check(CLI::PositiveNumber);
  auto* slice = sub->add_option("--slice", o->slice,
                  "with --time: run the batch as calls of N samples each where the graph's rows are independent; "
                  "'auto' (default) times every power of two and keeps the fastest, 'whole' never slices")
      ->check([](const std::string& v) {
        if (v == "auto" || v == "whole") return std::string();
        const bool number = !v.empty() && v.size() <= 9 && v.find_first_not_of("0123456789") == std::string::npos;
        return number && std::stoll(v) > 0 ? std::string() : "expected auto, whole or a number of samples, got '" + v + "'";
      });
  slice->needs(time);
  sub->callback([o, time] {
    if (*time && !o->jit) throw InputError("--time times the compiled forward pass: add --jit");
    run_graph(*o);
  });
});

}  // namespace kiln::cli
