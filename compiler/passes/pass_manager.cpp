#include "compiler/passes/pass_manager.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include "compiler/passes/passes.h"

namespace kiln {

const std::vector<GraphPass>& graph_passes() {
  static const std::vector<GraphPass> passes = {
      {"fold-constants", "nodes computed only from constants become constants (up to 4096 elements)", fold_constants},
      {"sink-transposes", "an elementwise op of transposed operands (one permutation) and small param-only values runs before the transpose, so transposes meet and compose away; a reduction of a transpose reduces its input over the permuted axes", sink_transposes},
      {"algebra", "x*1, x+0, x-0, x/1, neg(neg x), no-op cast/reshape/transpose/broadcast removed; transposes and broadcasts folded into their users", simplify_algebra},
      {"factor-sums", "a sum of x times a factor the same along the summed axes is the sum of x times the factor; a sum of neg(x) is neg of the sum", factor_sums},
      {"fold-scales", "a per-channel scale of a convolution's or matmul's result computed from params moves into its weights; a scalar scale into its smaller input", fold_scales_into_weights},
      {"cse", "no two nodes apply the same op with the same attrs to the same inputs", eliminate_common_subexpressions},
      {"dce", "every node feeds an output, gradient or update (inputs and params stay)", eliminate_dead_code},
      {"recompute", "a value of one tensor read only by elementwise ops of its shape, in two or more loops, is computed again in each reader, not stored, where its chain costs at most kRecomputeLaneOps vector instructions", recompute_cheap_values},
  };
  return passes;
}

const GraphPass& find_graph_pass(const std::string& name) {
  std::string known;
  for (const GraphPass& p : graph_passes()) {
    if (p.name == name) return p;
    known += (known.empty() ? "" : ", ") + p.name;
  }
  throw std::invalid_argument("unknown pass '" + name + "' (passes: " + known + ")");
}

std::vector<std::string> pipeline(const std::string& name) {
  if (name == "simplify") return {"fold-constants", "sink-transposes", "algebra", "factor-sums", "fold-scales", "cse", "dce"};
  throw std::invalid_argument("unknown pipeline '" + name + "' (pipelines: simplify)");
}

std::vector<std::string> pipeline_finish(const std::string& name) {
  if (name == "simplify") return {"recompute"};
  throw std::invalid_argument("unknown pipeline '" + name + "' (pipelines: simplify)");
}

// KILN_SKIP_PASSES=a,b: passes left out of every pipeline, for A/B
// measurements (`kiln profile` with and without one); an unknown name is an error.
static bool skipped(const std::string& name) {
  static const std::vector<std::string> skip = [] {
    std::vector<std::string> names;
    const char* env = std::getenv("KILN_SKIP_PASSES");
    std::string list = env ? env : "";
    for (size_t at = 0; at < list.size();) {
      size_t comma = list.find(',', at);
      if (comma == std::string::npos) comma = list.size();
      if (comma > at) names.push_back(find_graph_pass(list.substr(at, comma - at)).name);
      at = comma + 1;
    }
    return names;
  }();
  return std::find(skip.begin(), skip.end(), name) != skip.end();
}

std::vector<PassRun> run_passes(Graph& g, const std::vector<std::string>& passes, const PipelineOptions& options) {
  std::vector<PassRun> runs;
  for (int round = 1; round <= options.max_rounds; ++round) {
    bool any = false;
    for (const std::string& name : passes) {
      const GraphPass& pass = find_graph_pass(name);
      if (skipped(name)) continue;
      size_t before = g.nodes.size();
      bool changed = pass.run(g);
      verify_or_throw(g, "pass '" + name + "'");
      runs.push_back({name, round, before, g.nodes.size(), changed});
      any = any || changed;
      if (options.dump) {
        *options.dump << "// ---- after " << name << " (round " << round << "): " << before << " -> "
                      << g.nodes.size() << " nodes" << (changed ? "" : ", unchanged") << "\n// " << pass.contract
                      << "\n";
        if (changed) *options.dump << print_graph(g);
      }
    }
    if (!any) break;
  }
  return runs;
}

std::vector<PassRun> run_pipeline(Graph& g, const std::string& name, const PipelineOptions& options) {
  std::vector<PassRun> runs = run_passes(g, pipeline(name), options);
  PipelineOptions once = options;
  once.max_rounds = 1;
  for (PassRun& r : run_passes(g, pipeline_finish(name), once)) {
    r.round = runs.empty() ? 1 : runs.back().round + 1;
    runs.push_back(std::move(r));
  }
  return runs;
}

}  // namespace kiln
