#pragma once
// A byte-level text data set for language models: the corpus's bytes are the
// vocabulary (ids 0-255); train and validation are split by position (the
// last fraction is validation); a row is a window of context + 1 bytes, the
// first `context` the model's tokens, the last `context` its targets (the
// next byte at every position), both i32 [N, context].
//
// Rows are the non-overlapping windows k*context (every byte a target about
// once per epoch). In training each row's window moves to a random start
// k*context + shift (shift a Philox draw keyed by (seed, epoch, row) in
// [0, context)), so windows are random yet a batch is the same on any
// thread count and after a resume.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/data/batcher.h"
#include "runtime/data/dataset.h"

namespace kiln::data {

// The file's bytes (plain or gzip). Throws kiln::FileError naming the file.
std::vector<uint8_t> read_text_bytes(const std::string& path);

// Windows at 0, context, 2 context, ... of `text` (each needing context + 1 bytes).
Dataset text_windows(std::span<const uint8_t> text, int64_t context);

// The training transform: rewrites a batch's windows at their random starts.
// `text` must outlive the batcher.
std::function<void(Batch&, std::span<const int64_t>, int64_t)> random_window_transform(
    std::span<const uint8_t> text, int64_t context, uint64_t seed);

// Where the shifted window of `row` starts in `epoch`.
int64_t random_window_start(int64_t text_size, int64_t context, uint64_t seed, int64_t epoch, int64_t row);

}  // namespace kiln::data
