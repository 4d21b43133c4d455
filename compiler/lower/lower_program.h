#pragma once
// Graph(s) of primitives -> a Loop IR Program: buffers placed (one arena with
// compile-time offsets sized for the maximum batch; params and optimizer state
// in their own persistent storage), every node lowered through its op's
// OpDef::lower, and one entry point per requested graph.
#include <ostream>
#include <string>
#include <vector>

#include "compiler/lower/loop_ir.h"

namespace kiln::lower {

struct EntrySpec {
  std::string name;                   // predict, eval_step, train_step
  const Graph* graph = nullptr;       // must outlive the Program
  std::vector<std::string> outputs;   // graph output names or node names, in the entry's output order
  // Persistent tensors overwritten at the end of the step: param node -> node
  // holding its new value (copied after every other kernel ran).
  std::vector<std::pair<NodeId, NodeId>> updates;
};

struct LowerOptions {
  int64_t max_batch = 64;             // the open dimension's compiled maximum
  bool fuse = true;                   // fusion (compiler/lower/fusion.h); KILN_NO_FUSION=1 also turns it off
  std::vector<std::string>* why = nullptr;  // if set, receives each fusion decision with its reason
  std::ostream* dump = nullptr;  // if set: the Loop IR after lowering and after each loop pass
};

// Throws std::runtime_error naming the node when something cannot be lowered.
Program lower_program(const std::string& name, const std::vector<EntrySpec>& entries, const LowerOptions& opts);

// The entries of a forward graph: predict (probabilities, else logits, else
// every output) and eval_step (every output), plus init.
std::vector<EntrySpec> forward_entries(const Graph& g);

// A C identifier from a node name: "conv1/conv2d" -> "conv1__conv2d".
std::string c_identifier(const std::string& name);

// Arena placements are aligned to this many bytes (a cache line; covers every vector width).
constexpr int64_t kBufferAlign = 64;

}  // namespace kiln::lower
