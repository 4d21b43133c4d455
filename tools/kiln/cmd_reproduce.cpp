// kiln reproduce: run the seed's experiments (graphs/experiments/*.json) and
// write a report with the seed's numbers beside kiln's.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "compiler/codegen/compile_cache.h"
#include "compiler/driver/training_setup.h"
#include "compiler/frontend/graph_json.h"
#include "runtime/report/plot.h"
#include "runtime/train/param_export.h"
#include "runtime/train/predictions.h"
#include "tools/kiln/command.h"
#include "tools/kiln/data_prepare.h"
#include "tools/kiln/reproduce_checks.h"
#include "tools/kiln/reproduce_zoo.h"
#include "tools/kiln/train_run.h"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;

// Quick runs: data subsets and epochs small enough for < 10 minutes on 2 cores.
struct QuickSize {
  int64_t train, test, epochs;
};
QuickSize quick_size(const std::string& id) {
  if (id == "E4a") return {10000, 2000, 1};
  if (id == "E4c" || id == "E4d") return {5000, 2000, 1};
  return {10000, 2000, 3};  // the MLP runs (E1, E2, E3): 156 steps an epoch at batch 64
}

// "e4a_cnn" -> "E4a", "e1_mlp_manual_b64" -> "E1"
std::string experiment_id(const std::string& spec_name) {
  std::string id = "E";
  for (size_t i = 1; i < spec_name.size() && spec_name[i] != '_'; ++i) id += spec_name[i];
  return id;
}

std::string fmt(double v, int digits = 4) {
  if (std::isnan(v)) return "–";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

using Done = ExperimentRun;

// The seed's published numbers (see docs/DESIGN.md).
const std::map<std::string, std::string> kSeed = {
    {"E1", "epoch 1: train loss 3.048, acc 0.194, test loss 2.04, acc 0.228; epoch 3 test acc 0.305; epoch 10 test acc ≈ 0.41"},
    {"E2", "same curves as E1 (every printed loss and accuracy within 1e-3 relative); epoch time close"},
    {"E3", "larger α learns slower; α = 1 stops learning (loss flat)"},
    {"E4a", "train acc 0.9886, val acc 0.9777, test acc 0.9716 (2 epochs, batch 32)"},
    {"E4b", "saved and reloaded model gives the same predictions"},
    {"E4c", "65 trainable of 55,809 params; test acc 0.9595 (3 epochs)"},
    {"E4d", "better than E4c; about 2x the time"},
};

std::string history_table(const std::vector<report::EpochMetrics>& h) {
  std::ostringstream os;
  os << "| epoch | time (s) | train loss | train acc | val loss | val acc | test loss | test acc |\n"
     << "|---|---|---|---|---|---|---|---|\n";
  for (auto& m : h)
    os << "| " << m.epoch << " | " << fmt(m.seconds, 2) << " | " << fmt(m.train_loss) << " | " << fmt(m.train_acc)
       << " | " << fmt(m.val_loss) << " | " << fmt(m.val_acc) << " | " << fmt(m.test_loss) << " | "
       << fmt(m.test_acc) << " |\n";
  return os.str();
}

double mean_epoch_seconds(const RunOutcome& r) {
  double s = 0;
  for (auto& m : r.result.history) s += m.seconds;
  return r.result.history.empty() ? NAN : s / static_cast<double>(r.result.history.size());
}

// E4b: the E4a checkpoint and its exported .npy params, each loaded into a
// freshly compiled forward program, predict the test set bit for bit like the
// trained program did.
struct E4bResult {
  std::string markdown;
  bool identical = true;
};
E4bResult run_e4b(const Done& e4a, const TrainSpec& spec, const fs::path& out, int64_t test_subset, int threads) {
  fs::path dir = out / "runs" / "e4b_reload";
  fs::create_directories(dir);
  train::Checkpoint ckpt = train::load_checkpoint(e4a.run.result.checkpoint);
  std::ofstream(dir / "model.json") << ckpt.graph_json;
  train::export_params_npy((dir / "params").string(), ckpt.params);
  data::Dataset test = driver::load_split(spec, "test");
  if (test_subset > 0 && test_subset < test.size()) test = data::subset_random(test, test_subset, spec.seed);

  Graph g = parse_graph(read_file((dir / "model.json").string()), (dir / "model.json").string());
  E4bResult result;
  auto check = [&](const std::vector<train::NamedTensor>& params, const char* how) {
    driver::CompiledModel m = driver::compile_model(g, nullptr, e4a.run.max_batch, threads);
    train::Checkpoint c;
    c.params = params;
    driver::load_params(m, c);
    Tensor probs = train::predict_all(*m.program, test);
    bool same = probs.bit_equal(e4a.run.test_probabilities);
    result.identical = result.identical && same;
    std::vector<int> a = train::predicted_classes(probs), b = train::predicted_classes(e4a.run.test_probabilities);
    int64_t agree = 0;
    for (size_t i = 0; i < a.size(); ++i) agree += a[i] == b[i];
    std::ostringstream os;
    os << "- reloaded from " << how << ": " << (same ? "**bit-identical**" : "**DIFFERENT**") << " probabilities on "
       << test.size() << " test images (" << agree << " / " << a.size() << " same classes)\n";
    std::printf("E4b: %s: %s\n", how, same ? "bit-identical predictions" : "predictions differ");
    return os.str();
  };
  result.markdown = check(ckpt.params, "the checkpoint (graph JSON + weights)");
  result.markdown += check(train::import_params_npy((dir / "params").string()), "model.json + exported params/*.npy");
  return result;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  for (std::stringstream ss(text); ss.good();) {
    std::string item;
    std::getline(ss, item, ',');
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// The runs of one experiment: one per swept value, and E4a once per seed
// (the first seed keeps the spec's name: E4b-E4d start from that run).
std::vector<TrainSpec> experiment_variants(const TrainSpec& base, const std::string& id, const std::vector<uint64_t>& seeds) {
  std::vector<TrainSpec> out = expand_sweeps(base);
  if (id != "E4a") return out;
  std::vector<TrainSpec> seeded;
  for (const TrainSpec& spec : out)
    for (size_t i = 0; i < seeds.size(); ++i) {
      TrainSpec s = spec;
      s.seed = seeds[i];
      if (i > 0) s.name += "_seed" + std::to_string(seeds[i]);
      seeded.push_back(s);
    }
  return seeded;
}

RegisterCommand reg{65, [](CLI::App& app) {
  auto* sub = app.add_subcommand("reproduce", "Run the seed's experiments (E1-E4) and write a report beside the seed's numbers");
  struct Opts {
    bool quick = false, zoo = false, twins = false, resume = false;
    std::string only, out = "reports", experiments, seeds;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  sub->add_flag("--quick", o->quick, "data subsets and fewer epochs (minutes, not hours)");
  sub->add_option("--only", o->only, "comma-separated experiments, e.g. E1,E4a (E4b-E4d need E4a, E4d needs E4c)");
  sub->add_option("--out", o->out, "report folder (REPORT.md, plots, runs/)");
  sub->add_option("--experiments", o->experiments, "folder of experiment specs (default graphs/experiments)");
  sub->add_option("--threads", o->threads, "worker threads (default: every core)")->check(CLI::PositiveNumber);
  sub->add_option("--seeds", o->seeds, "E4a's seeds, comma-separated (default 1,2,3; quick: 1); the first feeds E4b-E4d");
  sub->add_flag("--zoo", o->zoo,
                "train the zoo (graphs/zoo/train/*.json) instead, one child process a model; report in reports/zoo "
                "(--only takes model names)");
  sub->add_flag("--twins", o->twins, "--zoo: also run each model's PyTorch twin (tools/bench/zoo/twin.py, bench venv)");
  sub->add_flag("--resume", o->resume, "--zoo: keep finished runs and twins, continue interrupted runs from their checkpoints");
  sub->callback([o] {
    if (o->zoo) {
      ZooOptions z;
      z.only = split_list(o->only);
      z.quick = o->quick, z.twins = o->twins, z.resume = o->resume, z.threads = o->threads;
      if (o->out != "reports") z.out = o->out;
      if (!o->experiments.empty()) z.specs = o->experiments;
      if (reproduce_zoo(z) != 0) throw InputError("some zoo runs failed (see the report)");
      return;
    }
    if (o->twins || o->resume) throw InputError("--twins and --resume go with --zoo");
    auto t0 = std::chrono::steady_clock::now();
    fs::path root = fs::path(default_data_dir()).parent_path();
    fs::path exp_dir = o->experiments.empty() ? root / "graphs" / "experiments" : fs::path(o->experiments);
    if (!fs::is_directory(exp_dir)) throw InputError("no experiments folder " + exp_dir.string());
    std::vector<std::string> only = split_list(o->only);
    std::vector<uint64_t> e4a_seeds;
    for (const std::string& s : split_list(o->seeds.empty() ? (o->quick ? "1" : "1,2,3") : o->seeds)) {
      try {
        e4a_seeds.push_back(std::stoull(s));
      } catch (const std::exception&) {
        throw InputError("--seeds: '" + s + "' is not a seed (want e.g. 1,2,3)");
      }
    }
    auto wanted = [&](const std::string& id) {
      return only.empty() || std::find(only.begin(), only.end(), id) != only.end();
    };
    std::vector<fs::path> files;
    for (auto& f : fs::directory_iterator(exp_dir))
      if (f.path().extension() == ".json") files.push_back(f.path());
    std::sort(files.begin(), files.end());
    fs::path out = o->out;
    fs::create_directories(out / "runs");

    std::vector<Done> done;
    std::map<std::string, std::string> run_dirs;  // spec name -> its run folder (for init_from)
    std::map<std::string, std::string> extra;     // per-experiment report text
    std::optional<bool> e4b_identical;
    const std::atomic<bool>* stop = install_interrupt_flag();
    for (const fs::path& f : files) {
      TrainSpec base = load_train_spec(f.string());
      std::string id = experiment_id(base.name);
      bool needed_by_e4b = id == "E4a" && wanted("E4b");
      if (!wanted(id) && !needed_by_e4b) continue;
      for (TrainSpec spec : experiment_variants(base, id, e4a_seeds)) {
        // init_from names another experiment's run: use this report's run of it.
        if (!spec.init_from.empty()) {
          std::string from_run = fs::path(spec.init_from).parent_path().filename().string();
          if (run_dirs.count(from_run)) spec.init_from = (fs::path(run_dirs[from_run]) / "final.ckpt").string();
        }
        RunOptions ro;
        ro.out_dir = (out / "runs" / spec.name).string();
        ro.threads = o->threads;
        ro.stop = stop;
        ro.progress = false;
        ro.cache_dir = codegen::default_cache_dir();
        if (o->quick) {
          QuickSize q = quick_size(id);
          ro.train_subset = q.train, ro.test_subset = q.test, ro.epochs = q.epochs;
        }
        std::printf("\n== %s: %s\n", id.c_str(), spec.name.c_str());
        std::fflush(stdout);
        RunOutcome r = run_training(spec, ro);
        if (r.result.interrupted) throw InputError("interrupted during " + spec.name);
        run_dirs.emplace(base.name, ro.out_dir);  // the first variant (E4a: the first seed) feeds init_from
        auto alpha = spec.optimizer.hyperparameters.find("alpha");
        done.push_back({id, spec.name, spec.seed,
                        alpha == spec.optimizer.hyperparameters.end() || id != "E3" ? NAN : alpha->second,
                        std::move(r)});
      }
      if (needed_by_e4b) {
        const Done* e4a = nullptr;
        for (auto& d : done)
          if (d.id == "E4a" && !e4a) e4a = &d;
        std::printf("\n== E4b: save, reload, predict\n");
        E4bResult e4b = run_e4b(*e4a, base, out, o->quick ? quick_size("E4a").test : 0, o->threads);
        extra["E4b"] = e4b.markdown;
        e4b_identical = e4b.identical;
      }
    }
    double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // ---- the report ----
    std::ostringstream md;
    md << "# kiln reproduces the seed's experiments\n\n"
       << (o->quick ? "**Quick run**: data subsets and fewer epochs (see each run's sizes); the numbers are not "
                      "comparable with the seed's full runs, only their direction is.\n\n"
                    : "Full run.\n\n")
       << "Total time: " << fmt(total, 1) << " s. Epoch times are the training's wall time on this machine "
       << "(the loader's waits included, evaluation not).\n\n";
    std::vector<CriterionResult> criteria = evaluate_criteria(done, e4b_identical ? &*e4b_identical : nullptr);
    md << "## Against the seed's results\n\n"
       << (o->quick ? "Quick run: the criteria are the full runs'; on subsets they are indicative only.\n\n" : "")
       << criteria_table(criteria, o->quick) << "\n";
    std::vector<report::Series> e3_loss, e3_acc;
    for (const char* id : {"E1", "E2", "E3", "E4a", "E4b", "E4c", "E4d"}) {
      bool any = extra.count(id) > 0;
      for (auto& d : done) any = any || d.id == id;
      if (!any) continue;
      md << "## " << id << "\n\nSeed: " << kSeed.at(id) << "\n\n";
      for (auto& d : done) {
        if (d.id != id) continue;
        const RunOutcome& r = d.run;
        md << "### " << d.name << "\n\n"
           << r.train_size << " train / " << r.validation_size << " validation / " << r.test_size << " test images; "
           << r.params << " params (" << r.trainable_params << " trainable); compile " << fmt(r.compile_seconds, 1)
           << " s; mean epoch " << fmt(mean_epoch_seconds(r), 2) << " s.\n\n"
           << history_table(r.result.history) << "\n"
           << "![curves](runs/" << d.name << "/curves.png)\n\n";
        if (r.confusion)
          md << "Test confusion matrix (accuracy " << fmt(r.confusion->accuracy()) << "):\n\n```\n"
             << r.confusion->to_text() << "```\n\n![confusion](runs/" << d.name << "/confusion.png)\n\n";
        if (id == std::string("E3")) {
          report::Series l{d.name.find('[') == std::string::npos ? d.name : d.name.substr(d.name.find('[')), {}, {}}, a = l;
          for (auto& m : r.result.history) {
            l.x.push_back(m.epoch), l.y.push_back(m.train_loss);
            a.x.push_back(m.epoch), a.y.push_back(m.test_acc);
          }
          e3_loss.push_back(l), e3_acc.push_back(a);
        }
      }
      if (extra.count(id)) md << extra[id] << "\n";
      if (id == std::string("E2")) {
        for (const char* variant : {"b64", "full"}) {
          const Done *e1 = nullptr, *e2 = nullptr;
          for (auto& d : done) {
            if (d.name == std::string("e1_mlp_manual_") + variant) e1 = &d;
            if (d.name == std::string("e2_mlp_autodiff_") + variant) e2 = &d;
          }
          if (e1 && e2)
            md << "- " << variant << ": largest relative difference E2 vs E1 over every printed number: "
               << fmt(max_relative_difference(e2->run.result.history, e1->run.result.history), 6)
               << "; mean epoch time E1 " << fmt(mean_epoch_seconds(e1->run), 2) << " s, E2 "
               << fmt(mean_epoch_seconds(e2->run), 2) << " s\n";
        }
        md << "\n";
      }
      if (id == std::string("E3") && !e3_loss.empty()) {
        try {
          report::plot_series(e3_loss, "E3: train loss per alpha", "epoch", "train loss", (out / "e3_loss.png").string());
          report::plot_series(e3_acc, "E3: test accuracy per alpha", "epoch", "test accuracy", (out / "e3_acc.png").string());
          md << "![E3 loss](e3_loss.png) ![E3 accuracy](e3_acc.png)\n\n";
        } catch (const std::exception& e) {
          std::fprintf(stderr, "warning: no E3 plot: %s\n", e.what());
        }
      }
      if (id == std::string("E4d")) {
        const Done *c = nullptr, *d4 = nullptr;
        for (auto& d : done) {
          if (d.id == "E4c") c = &d;
          if (d.id == "E4d") d4 = &d;
        }
        if (c && d4 && !c->run.result.history.empty() && !d4->run.result.history.empty())
          md << "- E4d vs E4c: test acc " << fmt(d4->run.result.history.back().test_acc) << " vs "
             << fmt(c->run.result.history.back().test_acc) << "; mean epoch time "
             << fmt(mean_epoch_seconds(d4->run), 2) << " s vs " << fmt(mean_epoch_seconds(c->run), 2) << " s ("
             << fmt(mean_epoch_seconds(d4->run) / mean_epoch_seconds(c->run), 2) << "x)\n\n";
      }
    }
    std::ofstream(out / "REPORT.md") << md.str();
    int failed = 0;
    for (auto& c : criteria) failed += !c.pass;
    std::printf("\n%zu criteria evaluated, %d not met%s\n", criteria.size(), failed,
                o->quick ? " (quick run: indicative only)" : "");
    for (auto& c : criteria)
      if (!c.pass) std::printf("  not met: %s %s (kiln: %s)\n", c.experiment.c_str(), c.criterion.c_str(), c.measured.c_str());
    std::printf("report: %s (total time %.1f s)\n", (out / "REPORT.md").string().c_str(), total);
  });
}};

}  // namespace
}  // namespace kiln::cli
