#pragma once
// Row epilogues: an elementwise kernel that is the only reader of a loop
// kernel's output runs inside that kernel, on each row of the output as soon
// as the row is final (Kernel::row_site, set by the lowering through
// KernelBuilder::row_final), while the row is still in L1.
//
// The typical case is inference through a depthwise convolution: batch norm
// folded into its filter leaves a bias add and a clip (ReLU6) after it. As
// kernels of their own, they read back the convolution's whole output from
// memory (MobileNetV2 at batch 32: 150 MB for its first depthwise layer);
// inside it, each pixel's channels are biased and clipped right after its
// taps are summed.
//
// The consumer obeys epilogue_fit.h's contract. Its loop, its statements
// unchanged, goes in at the site: a rows x columns nest as its column loop
// with the row variable replaced by the site's row, a flat loop as a loop
// over the row's columns at element row * cols + column. Its loop variables
// and locals are renumbered into the producer's.
#include <string>
#include <vector>

#include "compiler/lower/loop_ir.h"

namespace kiln::lower {

// Folds every qualifying (producer, consumer) pair; removes the consumers
// from the entries and clears every row site. Returns the number folded.
int fuse_row_epilogues(Program& p, std::vector<std::string>* why = nullptr);

}  // namespace kiln::lower
