#pragma once
// Runs named pipelines of graph passes, verifying the graph after each pass
// and, on request, printing it (`kiln ir --stage optimized --dump-after-each`).
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "compiler/ir/graph.h"

namespace kiln {

struct GraphPass {
  std::string name;       // "cse", "dce", "fold-constants", "algebra"
  std::string contract;   // one line: what it guarantees (printed by the dump)
  std::function<bool(Graph&)> run;  // returns whether it changed the graph
};

// Every registered pass, by name.
const std::vector<GraphPass>& graph_passes();
const GraphPass& find_graph_pass(const std::string& name);  // throws std::invalid_argument listing the names

struct PassRun {
  std::string pass;
  int round;
  size_t nodes_before, nodes_after;
  bool changed;
};

struct PipelineOptions {
  std::ostream* dump = nullptr;  // if set: after each pass, its name, node counts and the graph
  int max_rounds = 4;            // the pipeline repeats until a round changes nothing
};

// Runs `passes` in order, repeating the whole list until a round changes
// nothing (or max_rounds). verify_or_throw after every pass names the pass
// that broke the graph.
std::vector<PassRun> run_passes(Graph& g, const std::vector<std::string>& passes, const PipelineOptions& options = {});

// The named pipelines: "simplify" = fold-constants, sink-transposes, algebra,
// fold-scales, cse, dce to a fixpoint, then recompute once (pipeline_finish:
// passes that undo what cse merges).
std::vector<std::string> pipeline(const std::string& name);
std::vector<std::string> pipeline_finish(const std::string& name);
std::vector<PassRun> run_pipeline(Graph& g, const std::string& name, const PipelineOptions& options = {});

}  // namespace kiln
