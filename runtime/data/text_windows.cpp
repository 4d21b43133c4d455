#include "runtime/data/text_windows.h"

#include <algorithm>
#include <stdexcept>

#include "runtime/data/gzip.h"
#include "runtime/random/philox.h"

namespace kiln::data {

std::vector<uint8_t> read_text_bytes(const std::string& path) { return read_maybe_gzip(path); }

namespace {

void fill_window(std::span<const uint8_t> text, int64_t start, int64_t context, int32_t* tokens, int32_t* targets) {
  for (int64_t i = 0; i < context; ++i) {
    tokens[i] = text[static_cast<size_t>(start + i)];
    targets[i] = text[static_cast<size_t>(start + i + 1)];
  }
}

}  // namespace

Dataset text_windows(std::span<const uint8_t> text, int64_t context) {
  if (context < 1) throw std::invalid_argument("a text window needs a context of at least 1");
  const int64_t size = static_cast<int64_t>(text.size());
  const int64_t n = size > context ? (size - 1) / context : 0;
  if (n == 0)
    throw std::invalid_argument("the text has " + std::to_string(size) + " bytes, too few for one window of " +
                                std::to_string(context + 1));
  Tensor tokens(ElemType::i32, {n, context}), targets(ElemType::i32, {n, context});
  for (int64_t k = 0; k < n; ++k)
    fill_window(text, k * context, context, tokens.data<int32_t>() + k * context, targets.data<int32_t>() + k * context);
  return Dataset::make(std::move(tokens), std::move(targets));
}

int64_t random_window_start(int64_t text_size, int64_t context, uint64_t seed, int64_t epoch, int64_t row) {
  static constexpr uint64_t kStream = random::name_hash("kiln.text_window");
  const float u = random::uniform(random::stream_key(seed, kStream), static_cast<uint64_t>(epoch), static_cast<uint64_t>(row));
  const int64_t shift = std::min<int64_t>(static_cast<int64_t>(u * static_cast<float>(context)), context - 1);
  return std::min(row * context + shift, text_size - context - 1);
}

std::function<void(Batch&, std::span<const int64_t>, int64_t)> random_window_transform(std::span<const uint8_t> text,
                                                                                       int64_t context, uint64_t seed) {
  return [text, context, seed](Batch& batch, std::span<const int64_t> rows, int64_t epoch) {
    Tensor& tokens = batch.own_features();
    Tensor& targets = batch.own_labels();
    const int64_t size = static_cast<int64_t>(text.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      const int64_t start = random_window_start(size, context, seed, epoch, rows[i]);
      fill_window(text, start, context, tokens.data<int32_t>() + static_cast<int64_t>(i) * context,
                  targets.data<int32_t>() + static_cast<int64_t>(i) * context);
    }
  };
}

}  // namespace kiln::data
