// kiln difftest: random graphs through every way kiln compiles them, against
// the interpreter and each other (tools/difftest/difftest.h); failures shrunk
// and written as fixtures that tests/unit/difftest_test.cpp replays.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "tools/difftest/difftest.h"
#include "tools/kiln/command.h"

namespace kiln::cli {

namespace {

using namespace kiln::difftest;

struct DifftestOptions {
  int count = 100;
  uint64_t seed = 1;
  double hours = 0;
  bool every_check = false, stop_on_finding = false, no_shrink = false, require_all_ops = false;
  std::string fixtures = "difftest-findings";
  std::vector<std::string> replay;
};

// Which checks graph i runs: the cheap ones always, the costly ones in turn
// (--every-check runs all), and which specials its inputs carry.
CheckOptions options_for(size_t i, bool every) {
  CheckOptions o;
  o.checks = {Check::jit, Check::threads};
  auto turn = [&](size_t period, size_t phase, Check c) {
    if (every || i % period == phase) o.checks.push_back(c);
  };
  turn(2, 0, Check::fusion_off);
  turn(2, 1, Check::width_256);
  turn(2, 1, Check::train_step);
  turn(4, 0, Check::gradcheck);
  turn(8, 3, Check::aot);
  const Planted specials[] = {Planted::nan, Planted::inf, Planted::denormal, Planted::zero};
  if (i % 4 == 2) o.planted = specials[(i / 4) % 4];
  return o;
}

std::string join_checks(const std::vector<Check>& cs) {
  std::string s;
  for (Check c : cs) s += (s.empty() ? "" : ",") + check_name(c);
  return s;
}

int replay(const std::vector<std::string>& files) {
  int failed = 0;
  for (const std::string& f : files) {
    nlohmann::json j = nlohmann::json::parse(read_file(f));
    Case c = case_from_json(j, f);
    CaseResult r = check_case(c, fixture_options(j));
    for (const Finding& x : r.findings) std::cout << f << ": " << check_name(x.check) << ": " << x.message << "\n";
    std::cout << f << ": " << (r.findings.empty() ? "ok" : "FAILS") << " (" << join_checks(r.ran) << ")\n";
    failed += !r.findings.empty();
  }
  return failed ? 1 : 0;
}

int run(const DifftestOptions& o) {
  if (!o.replay.empty()) return replay(o.replay);
  auto start = std::chrono::steady_clock::now();
  auto elapsed_s = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  std::map<std::string, int> ran;
  std::set<std::string> ops_seen;
  int findings = 0, unconfirmed = 0;
  size_t graphs = 0;
  const std::vector<std::string> all_ops = generatable_ops();
  for (size_t i = 0;; ++i) {
    if (o.hours > 0 ? elapsed_s() > o.hours * 3600 : static_cast<int>(i) >= o.count) break;
    uint64_t seed = o.seed + i;
    Case c;
    try {
      // Graph i starts with op i (round robin): every op is in any batch of
      // at least as many graphs as ops, whatever the draws.
      GenOptions go;
      go.first_op = all_ops[i % all_ops.size()];
      c = generate(seed, go);
    } catch (const std::exception& e) {  // a bug in the generator itself: reported, the run goes on
      ++findings;
      std::cout << "FINDING seed " << seed << " (generator): " << e.what() << "\n";
      continue;
    }
    for (auto& op : c.ops) ops_seen.insert(op);
    CheckOptions co = options_for(i, o.every_check);
    CaseResult r;
    try {
      r = check_case(c, co);
    } catch (const std::exception& e) {  // the graph's forward form failed to build
      r.findings.push_back({Check::jit, std::string("threw: ") + e.what()});
    }
    ++graphs;
    for (Check k : r.ran) ++ran[check_name(k)];
    unconfirmed += r.unconfirmed;
    for (const Finding& f : r.findings) {
      ++findings;
      std::cout << "FINDING seed " << seed << " (" << check_name(f.check) << ", inputs " << planted_name(co.planted)
                << "): " << f.message << "\n";
      Case small = c;
      if (!o.no_shrink) {
        CheckOptions one = co;
        one.checks = {f.check};
        small = shrink(c, [&](const Case& t) {
          try {
            return !check_case(t, one).findings.empty();
          } catch (const std::exception&) {
            return true;
          }
        });
      }
      std::filesystem::create_directories(o.fixtures);
      std::string path = o.fixtures + "/seed" + std::to_string(seed) + "_" + check_name(f.check) + ".json";
      nlohmann::json j = case_to_json(small, f.message);
      j["checks"] = {check_name(f.check)};
      j["planted"] = planted_name(co.planted);
      std::ofstream(path) << j.dump(1) << "\n";
      std::cout << "  shrunk from " << c.model.nodes.size() << " to " << small.model.nodes.size()
                << " nodes: " << path << "\n";
    }
    if (findings && o.stop_on_finding) break;
    if ((i + 1) % 25 == 0)
      std::cout << "difftest: " << graphs << " graphs, " << findings << " findings, " << static_cast<int>(elapsed_s())
                << " s\n" << std::flush;
  }
  double s = elapsed_s();
  std::cout << "difftest: " << graphs << " graphs in " << static_cast<int>(s) << " s ("
            << static_cast<int>(graphs / std::max(s, 1e-9) * 3600) << " graphs/hour), seeds " << o.seed << ".."
            << o.seed + graphs - 1 << "\n  checks run:";
  for (auto& [name, n] : ran) std::cout << " " << name << " " << n;
  auto all = generatable_ops();
  std::vector<std::string> missing;
  for (auto& op : all)
    if (!ops_seen.count(op)) missing.push_back(op);
  std::cout << "\n  ops used: " << all.size() - missing.size() << " of " << all.size();
  if (!missing.empty()) {
    std::cout << " (never:";
    for (auto& m : missing) std::cout << " " << m;
    std::cout << ")";
  }
  std::cout << "\n  mismatches that did not recur on fresh inputs: " << unconfirmed << "\n  findings: " << findings
            << "\n";
  if (o.require_all_ops && !missing.empty()) {
    std::cout << "difftest: some ops appeared in no graph (--require-all-ops)\n";
    return 1;
  }
  return findings ? 1 : 0;
}

RegisterCommand reg(95, [](CLI::App& app) {
  auto o = std::make_shared<DifftestOptions>();
  auto* sub = app.add_subcommand("difftest", "random graphs compiled every way, checked against the interpreter and each other");
  sub->add_option("--count", o->count, "graphs to check (default 100)");
  sub->add_option("--seed", o->seed, "seed of the first graph; graph i uses seed + i (default 1)");
  sub->add_option("--hours", o->hours, "soak: check fresh graphs for this long instead of --count");
  sub->add_flag("--every-check", o->every_check, "run every check on every graph (default: the costly ones in turn)");
  sub->add_flag("--stop-on-finding", o->stop_on_finding, "stop at the first confirmed mismatch");
  sub->add_flag("--no-shrink", o->no_shrink, "write failing graphs as generated");
  sub->add_flag("--require-all-ops", o->require_all_ops, "fail unless every registry op appeared in some graph");
  sub->add_option("--fixtures", o->fixtures, "folder for shrunk failing graphs (default difftest-findings)");
  sub->add_option("--replay", o->replay, "check these kiln.difftest/1 fixtures instead of generating");
  sub->callback([o] {
    if (run(*o) != 0) throw std::runtime_error("difftest failed (see above)");
  });
});

}  // namespace

}  // namespace kiln::cli
