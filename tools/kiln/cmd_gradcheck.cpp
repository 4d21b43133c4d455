// kiln gradcheck: autodiff and hand-written gradients vs finite differences, in f64.
#include <iostream>

#include "compiler/autodiff/autodiff.h"
#include "compiler/autodiff/gradcheck.h"
#include "compiler/frontend/train_spec.h"
#include "tools/kiln/command.h"

namespace kiln::cli {

Graph load_graph_or_fail(const std::string& path);

static RegisterCommand gradcheck_cmd(30, [](CLI::App& app) {
  auto* sub = app.add_subcommand(
      "gradcheck", "Check autodiff (and a graph's hand-written gradients) against finite differences in f64; exit 1 above tolerance");
  struct Opts {
    std::string file, spec;
    GradcheckOptions check;
  };
  auto o = std::make_shared<Opts>();
  sub->add_option("graph", o->file, "graph JSON file")->required()->check(CLI::ExistingFile);
  sub->add_option("--spec", o->spec, "training spec: its freeze/unfreeze patterns choose the params checked")
      ->check(CLI::ExistingFile);
  sub->add_option("--tol", o->check.tolerance, "maximum relative error")->capture_default_str();
  sub->add_option("--samples", o->check.samples, "coordinates checked per large param (plus one random direction)")
      ->capture_default_str()->check(CLI::Range(1, 100000));
  sub->add_option("--seed", o->check.seed, "seed of the inputs, coordinates and directions")->capture_default_str();
  sub->add_option("--batch", o->check.batch, "size of the open batch dimension")->capture_default_str()->check(CLI::Range(1, 4096));
  sub->add_option("--step", o->check.step, "finite-difference step h")->capture_default_str();
  sub->callback([o] {
    Graph g = load_graph_or_fail(o->file);
    // GraphError, AutodiffError, ...: main() prints any error and exits 1.
    if (!o->spec.empty()) apply_train_spec(g, load_train_spec(o->spec));
    GradcheckReport report = gradcheck(g, o->check);
    std::cout << report.text();
    if (!report.passed()) throw InputError("gradient check failed for " + o->file);
  });
});

}  // namespace kiln::cli
