#include "tools/kiln/reproduce_zoo.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "compiler/codegen/host.h"
#include "compiler/frontend/train_spec.h"
#include "runtime/report/metrics.h"
#include "tools/kiln/command.h"
#include "tools/kiln/data_prepare.h"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Child {
  int status = -1;
  double seconds = 0, peak_rss_mb = 0;
};

// Runs argv[0] with its arguments, stdout and stderr to `log` (appended)
// when given; waits, and reports its exit status, wall time and peak RSS.
Child run_child(const std::vector<std::string>& argv, const std::string& log) {
  auto t0 = std::chrono::steady_clock::now();
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    if (!log.empty()) {
      if (!std::freopen(log.c_str(), "a", stdout)) _exit(126);
      dup2(fileno(stdout), 2);
    }
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  Child c;
  struct rusage use {};
  if (wait4(pid, &c.status, 0, &use) < 0) throw std::runtime_error("waiting for " + argv[0] + " failed");
  c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  c.peak_rss_mb = static_cast<double>(use.ru_maxrss) / 1024.0;
  return c;
}

std::string command_output(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
  }
  return out;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Bytes a report can show: printable ASCII and newlines as they are, the rest as \xNN.
std::string printable(const std::string& bytes) {
  std::string out;
  for (unsigned char c : bytes) {
    if (c == '\n' || (c >= 0x20 && c < 0x7f)) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return buf;
}

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return trimmed(line.substr(line.find(':') + 2));
  return "unknown CPU";
}

std::string fmt(double v, int digits) {
  if (!std::isfinite(v)) return "–";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

json read_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) return json();
  try {
    return json::parse(in);
  } catch (const json::exception&) {
    return json();
  }
}

// Quick runs: enough steps to exercise data, augmentation, schedule and
// checkpoint on every model, in well under a minute each on 2 cores.
std::vector<std::string> quick_args(const TrainSpec& spec) {
  if (spec.dataset == "text") return {"--steps", "20", "--subset", "640", "--test-subset", "32"};
  if (spec.dataset == "cifar10") return {"--epochs", "1", "--subset", "512", "--test-subset", "256"};
  return {"--epochs", "1", "--subset", "2000", "--test-subset", "500"};
}

// The run's final numbers, from its metrics.json.
json kiln_summary(const TrainSpec& spec, const fs::path& dir) {
  json m = read_json(dir / "metrics.json");
  auto history = m.is_null() ? std::vector<report::EpochMetrics>{} : report::history_from_json(m);
  json s = {{"epochs", history.size()}};
  if (history.empty()) return s;
  double secs = 0, step_secs = 0;
  for (auto& e : history) secs += e.seconds, step_secs += std::isnan(e.step_seconds) ? e.seconds : e.step_seconds;
  const auto& last = history.back();
  if (spec.dataset == "text") {
    s["val_loss"] = last.val_loss;
    s["val_bpc"] = last.val_loss / std::log(2.0);
  } else {
    s["test_accuracy"] = last.test_acc;
    s["test_loss"] = last.test_loss;
  }
  s["train_loss"] = last.train_loss;
  int64_t steps = 0;
  std::ifstream csv(dir / "steps.csv");
  for (std::string line; std::getline(csv, line);) steps += !line.empty() && std::isdigit(static_cast<unsigned char>(line[0]));
  s["steps"] = steps;
  s["seconds_per_100_steps"] = steps ? 100.0 * secs / static_cast<double>(steps) : NAN;
  s["train_seconds"] = secs;  // the training's wall time ("Epoch Time" summed: loader included, evaluation not)
  s["step_seconds"] = step_secs;  // of which in the compiled steps
  s["mean_epoch_seconds"] = secs / static_cast<double>(history.size());
  return s;
}

}  // namespace

int reproduce_zoo(const ZooOptions& o) {
  const fs::path root = fs::path(default_data_dir()).parent_path();
  const fs::path spec_dir = o.specs.empty() ? root / "graphs" / "zoo" / "train" : fs::path(o.specs);
  if (!fs::is_directory(spec_dir)) throw InputError("no zoo specs folder " + spec_dir.string());
  std::vector<fs::path> specs;
  for (auto& f : fs::directory_iterator(spec_dir))
    if (f.path().extension() == ".json") specs.push_back(f.path());
  std::sort(specs.begin(), specs.end());
  for (const std::string& name : o.only)
    if (std::none_of(specs.begin(), specs.end(), [&](const fs::path& p) { return p.stem() == name; }))
      throw InputError("--only: no zoo spec " + (spec_dir / (name + ".json")).string());
  const fs::path out = o.out;
  fs::create_directories(out / "runs");
  const std::string self = fs::canonical("/proc/self/exe").string();
  const std::string commit = trimmed(command_output("git -C '" + root.string() + "' describe --always --dirty 2>/dev/null"));
  const codegen::HostTarget& host = codegen::host_target();
  const std::string host_text = cpu_name() + " (LLVM " + host.cpu + ", " + std::to_string(host.vector_bits) + "-bit vectors)";
  const std::string venv = std::getenv("KILN_BENCH_VENV") ? std::getenv("KILN_BENCH_VENV")
                                                          : std::string(std::getenv("HOME") ? std::getenv("HOME") : ".") + "/.cache/kiln/bench-venv";
  int failures = 0;
  json runs = json::array();
  for (const fs::path& file : specs) {
    const std::string model = file.stem().string();
    if (!o.only.empty() && std::find(o.only.begin(), o.only.end(), model) == o.only.end()) continue;
    TrainSpec spec = load_train_spec(file.string());
    const fs::path dir = out / "runs" / model;
    fs::create_directories(dir);
    json run = read_json(dir / "run.json");
    const bool finished = o.resume && run.is_object() && run.value("finished", false);
    std::printf("\n== zoo: %s%s\n", model.c_str(), finished ? " (finished earlier, kept)" : "");
    if (!finished) {
      std::vector<std::string> argv = {self, "train", file.string(), "--out", dir.string()};
      if (o.threads > 0) argv.insert(argv.end(), {"--threads", std::to_string(o.threads)});
      if (o.quick) for (auto& a : quick_args(spec)) argv.push_back(a);
      for (const char* ckpt : {"interrupted.ckpt", "checkpoint.ckpt"})
        if (o.resume && fs::exists(dir / ckpt)) {
          argv.insert(argv.end(), {"--resume", (dir / ckpt).string()});
          std::printf("resuming from %s\n", (dir / ckpt).string().c_str());
          break;
        }
      if (!o.resume) fs::remove(dir / "train.log");
      Child c = run_child(argv, (dir / "train.log").string());
      const bool ok = WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0;
      run = {{"model", model}, {"spec", file.string()}, {"date", utc_now()}, {"commit", commit}, {"host", host_text},
             {"threads", o.threads}, {"quick", o.quick}, {"finished", ok}, {"wall_seconds", c.seconds},
             {"peak_rss_mb", c.peak_rss_mb}};
      run["kiln"] = kiln_summary(spec, dir);
      if (!ok) {
        ++failures;
        std::printf("kiln train failed (status %d): see %s\n", c.status, (dir / "train.log").string().c_str());
      }
      if (ok && spec.dataset == "text") {  // what the model learned, in its own words
        std::string text = command_output("'" + self + "' generate '" + (dir / "final.ckpt").string() +
                                          "' --prompt 'And God said' --tokens 300 --temperature 0.8 --seed 1");
        std::ofstream(dir / "generated.txt") << text;
        run["generated"] = printable(text);
      }
      std::ofstream(dir / "run.json") << run.dump(2) << "\n";
    }
    if (o.twins && !(o.resume && fs::exists(dir / "twin.json"))) {
      std::vector<std::string> argv = {venv + "/bin/python", (root / "tools" / "bench" / "zoo" / "twin.py").string(),
                                       "--model", model, "--out", (dir / "twin.json").string(), "--seed",
                                       std::to_string(spec.seed)};
      if (o.threads > 0) argv.insert(argv.end(), {"--threads", std::to_string(o.threads)});
      if (o.quick) argv.push_back("--quick");
      std::printf("twin: %s\n", model.c_str());
      Child c = run_child(argv, (dir / "twin.log").string());
      if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0) {
        ++failures;
        std::printf("the PyTorch twin failed (status %d): see %s (bench venv: %s; tools/bench/peers.sh builds it)\n",
                    c.status, (dir / "twin.log").string().c_str(), venv.c_str());
      }
    }
    run["twin"] = read_json(dir / "twin.json");
    runs.push_back(run);
    const json& k = run["kiln"];
    std::printf("%s: %s\n", model.c_str(),
                k.contains("val_bpc") ? ("validation bits per character " + fmt(k["val_bpc"].get<double>(), 3)).c_str()
                : k.contains("test_accuracy") ? ("test accuracy " + fmt(k["test_accuracy"].get<double>(), 4)).c_str()
                                              : "no metrics");
  }

  // ---- the report ----
  std::ostringstream md;
  md << "# kiln's zoo, trained" << (o.twins ? " beside PyTorch twins" : "") << "\n\n"
     << (o.quick ? "**Quick run** (data subsets, one epoch or 20 steps): a smoke test, not a result.\n\n" : "")
     << "CIFAR-10 here is the JPEG re-encoding in ../shared/data (see its README), not the official pixels.\n"
     << "Times are each framework's training loop, data loading and augmentation included, evaluation not "
        "(kiln's \"Epoch Time\"; the steps' own share is `step_seconds` in run.json). Peak memory is each "
        "process's maximum resident set.\n\n"
     << "| model | result | kiln | twin | kiln time | twin time | kiln peak MB | twin peak MB | date, commit, host |\n"
     << "|---|---|---|---|---|---|---|---|---|\n";
  for (const json& r : runs) {
    const json &k = r.value("kiln", json::object()), &t = r.value("twin", json());
    const bool text = k.contains("val_bpc");
    const json tf = t.is_object() ? t.value("final", json::object()) : json::object();
    // A number, or the mean of a list of them (the twin's time per block of 100 steps).
    auto num = [](const json& j, const char* key) -> double {
      if (!j.is_object() || !j.contains(key)) return NAN;
      const json& v = j[key];
      if (v.is_number()) return v.get<double>();
      if (!v.is_array() || v.empty()) return NAN;
      double sum = 0;
      for (const json& e : v) sum += e.is_number() ? e.get<double>() : NAN;
      return sum / static_cast<double>(v.size());
    };
    // Language models: seconds per 100 steps; image models: per epoch.
    const char* per = text ? "seconds_per_100_steps" : "mean_epoch_seconds";
    const std::string time_unit = text ? " s/100 steps" : " s/epoch";
    const double kiln_time = num(k, per);
    const double twin_time = t.is_object() ? num(t, per) : NAN;
    md << "| " << r.value("model", "") << " | " << (text ? "val bits/char" : "test accuracy") << " | "
       << fmt(text ? num(k, "val_bpc") : num(k, "test_accuracy"), text ? 3 : 4) << " | "
       << fmt(text ? num(tf, "val_bpc") : num(tf, "test_accuracy"), text ? 3 : 4) << " | " << fmt(kiln_time, 1)
       << time_unit << " | " << fmt(twin_time, 1) << (std::isfinite(twin_time) ? time_unit : "") << " | "
       << fmt(num(r, "peak_rss_mb"), 0) << " | " << (t.is_object() ? fmt(num(t, "peak_rss_mb"), 0) : "–") << " | "
       << r.value("date", "") << ", " << r.value("commit", "") << ", " << r.value("host", "") << " |\n";
  }
  md << "\n";
  for (const json& r : runs) {
    const std::string m = r.value("model", "");
    md << "## " << m << "\n\n![curves](runs/" << m << "/curves.png)\n\n";
    if (fs::exists(out / "runs" / m / "confusion.png")) md << "![confusion](runs/" << m << "/confusion.png)\n\n";
    if (r.contains("generated")) md << "Generated (`kiln generate --prompt 'And God said' --tokens 300 --temperature 0.8`):\n\n```\n"
                                    << r["generated"].get<std::string>() << "\n```\n\n";
  }
  std::ofstream(out / "REPORT.md") << md.str();
  std::ofstream(out / "zoo.json") << runs.dump(2) << "\n";
  std::printf("\nreport: %s (%d failed)\n", (out / "REPORT.md").string().c_str(), failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace kiln::cli
