#pragma once
// Fusion: which graph nodes share a kernel, decided before lowering so that
// values that stay inside a kernel never get an arena buffer.
//
//   elementwise groups  chains/DAGs of elementwise nodes over one iteration
//                       space (broadcasts only as reads from outside the
//                       group) become one loop nest; members used only inside
//                       the group are never stored. A matmul's bias add +
//                       activation becomes one pass right after the GEMM.
//   into consumers      a group whose only consumer is a reduction or a
//                       concat (ops declaring inlines_elementwise_input) is
//                       computed inside the consumer's loop, never stored
//                       (sum(square(w)) of an L2 penalty: one read of w; each
//                       part of a concat written straight into its place).
//   in-place updates    an optimizer update whose last reader of the old
//                       value is its own kernel stores straight into the
//                       param, so no copy kernel runs after the step.
//
// Every decision is recorded with its reason (FusionPlan::why) for
// `kiln ir G --stage loops --why`.
#include <string>
#include <vector>

#include "compiler/lower/loop_ir.h"

namespace kiln::lower {

struct FusionGroup {
  std::vector<NodeId> members;  // in graph (topological) order; the kernel runs where the last one is
  std::vector<NodeId> outputs;  // members stored to memory: used outside the group, entry outputs, updates
  Shape shape;                  // the iteration space: every member's shape
  NodeId into = kNoNode;        // a consumer computing the group inline as it reads it (nothing stored)
};

struct FusionPlan {
  std::vector<int> group_of;                      // per node: its group, -1 when lowered on its own
  std::vector<FusionGroup> groups;                // groups of two or more nodes
  std::vector<std::pair<NodeId, NodeId>> in_place; // (update value, param): value stored into the param
  std::vector<std::string> why;                   // one line per decision

  // A member that no kernel stores: it gets no buffer.
  bool internal(NodeId id) const;
  // Whether id is the member whose position runs its group's kernel.
  bool places_group(NodeId id) const;
  // The param an update value is stored into in place, else kNoNode.
  NodeId in_place_param(NodeId value) const;
  // The groups a consumer computes inline: (its input slot, group) pairs.
  std::vector<std::pair<size_t, int>> inlined_inputs(const Graph& g, NodeId consumer) const;
};

// needed_by[e][n]: entry e computes node n. must_store: nodes an entry reads
// back (outputs, update values). updates: (param, new value) pairs.
FusionPlan plan_fusion(const Graph& g, const std::vector<std::vector<bool>>& needed_by,
                       const std::vector<bool>& must_store, const std::vector<std::pair<NodeId, NodeId>>& updates);

// One loop kernel computing every member of `grp`; buffer_of maps nodes to
// buffers (every external input and every output has one).
Kernel lower_fused_group(Program& p, const Graph& g, const FusionGroup& grp, const std::vector<int>& buffer_of);

// A consumer's lowering reads input `slot`, a group it computes inline,
// through this (negative) buffer id; inline_group() then replaces each such
// load by the expression of `read` (the member the slot reads, not
// necessarily the group's last: concat(x, f(x)) reads two members of one
// group) at that (linear) index.
constexpr int inlined_input_buffer(size_t slot) { return -2 - static_cast<int>(slot); }
void inline_group(const Program& p, const Graph& g, const FusionGroup& grp, const std::vector<int>& buffer_of,
                  int placeholder, NodeId read, Kernel& k);

// The plan's decisions, one per line, for `kiln ir --why`.
std::string print_fusion_why(const std::vector<std::string>& why);

}  // namespace kiln::lower
