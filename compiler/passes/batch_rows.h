#pragma once
// Batch slicing's analysis: whether each row of an entry's outputs (along the
// open batch dimension) is computed from the same row of its inputs alone.
// Where it is, a batch may run as several smaller ones with the same results
// bit for bit (runtime/program.h, Program::set_batch_slice): a memory-bound
// model keeps a slice's activations in cache instead of streaming the whole
// batch's through memory at every layer.
#include <string>
#include <vector>

#include "compiler/ir/graph.h"

namespace kiln {

// The open batch dimension's axis in a type (-1 where it has none, -2 where
// it has several).
int open_axis(const TensorType& t);

// Empty when rows are independent over the nodes `needed` marks (indexed by
// NodeId) for outputs `outputs`; else why not, naming the first node that
// mixes rows (a sum over the batch, a softmax along it, a random draw).
// Each input and output must carry the open dimension as its axis 0, or not
// at all (an input the same for every row).
std::string rows_mixed(const Graph& g, const std::vector<bool>& needed, const std::vector<NodeId>& outputs);

}  // namespace kiln
