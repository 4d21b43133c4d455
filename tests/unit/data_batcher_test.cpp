#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <numeric>
#include <set>

#include "compiler/driver/training_setup.h"
#include "runtime/data/batcher.h"
#include "runtime/data/shuffle.h"

using namespace kiln;
using namespace kiln::data;

namespace {

// Row i: features {i, -i} (f32), label i (i32), so a batch names its rows.
Dataset numbered(int64_t n) {
  Tensor f(ElemType::f32, {n, 2});
  Tensor l(ElemType::i32, {n});
  for (int64_t i = 0; i < n; ++i) {
    f.data<float>()[2 * i] = float(i);
    f.data<float>()[2 * i + 1] = -float(i);
    l.data<int32_t>()[i] = int32_t(i);
  }
  return Dataset::make(std::move(f), std::move(l));
}

std::vector<int32_t> rows(const Batch& b) {
  auto s = b.labels().span<int32_t>();
  return {s.begin(), s.end()};
}

// Every batch of `epochs` epochs, each as its row ids; -1 marks an epoch end.
std::vector<std::vector<int32_t>> drain(Batcher& b, int epochs) {
  std::vector<std::vector<int32_t>> out;
  for (int e = 0; e < epochs; ++e) {
    while (auto batch = b.next()) {
      for (int64_t i = 0; i < batch->size(); ++i)
        CHECK(batch->features().data<float>()[2 * i] == float(rows(*batch)[i]));  // features follow labels
      out.push_back(rows(*batch));
    }
    out.push_back({-1});
  }
  return out;
}

}  // namespace

TEST_CASE("shuffle: the documented Fisher-Yates, pinned") {
  // uniform_below and fisher_yates are ours, not the standard library's: the
  // same seed gives the same order on every toolchain. Pin one permutation.
  auto p = seeded_permutation(10, 42);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> iota(10);
  std::iota(iota.begin(), iota.end(), 0);
  CHECK(sorted == iota);
  // Recompute by hand from the raw engine.
  std::mt19937_64 rng(42);
  std::vector<int64_t> q = iota;
  for (size_t i = 9; i >= 1; --i) {
    uint64_t bound = i + 1, threshold = (0 - bound) % bound, r;
    do r = rng(); while (r < threshold);
    std::swap(q[i], q[r % bound]);
  }
  CHECK(p == q);
  CHECK(seeded_permutation(10, 43) != p);
  std::mt19937_64 a(7);
  a();
  std::mt19937_64 b = parse_rng_state(rng_state(a));
  CHECK(a() == b());
  CHECK_THROWS_AS(parse_rng_state("1 2 3"), std::invalid_argument);
}

TEST_CASE("batcher: partial last batch, seeded shuffle, epochs differ") {
  Dataset d = numbered(10);
  Batcher b(d, {.batch_size = 4, .shuffle = true, .seed = 1});
  CHECK(b.batches_per_epoch() == 3);
  auto seq = drain(b, 3);
  REQUIRE(seq.size() == 12);
  CHECK(seq[0].size() == 4);
  CHECK(seq[2].size() == 2);  // the last partial batch is kept
  std::vector<int32_t> epoch0, epoch1;
  for (int i = 0; i < 3; ++i) epoch0.insert(epoch0.end(), seq[i].begin(), seq[i].end());
  for (int i = 4; i < 7; ++i) epoch1.insert(epoch1.end(), seq[i].begin(), seq[i].end());
  CHECK(std::set<int32_t>(epoch0.begin(), epoch0.end()).size() == 10);  // each row once
  CHECK(epoch0 != epoch1);                                              // reshuffled each epoch
  // Epoch 0 is fisher_yates of 0..9 from mt19937_64(seed).
  auto p = seeded_permutation(10, 1);
  CHECK(std::equal(epoch0.begin(), epoch0.end(), p.begin()));
  // Same seed, same sequence; with or without the background thread.
  Batcher again(d, {.batch_size = 4, .shuffle = true, .seed = 1, .prefetch = false});
  CHECK(drain(again, 3) == seq);
  Batcher other(d, {.batch_size = 4, .shuffle = true, .seed = 2});
  CHECK(drain(other, 1) != std::vector(seq.begin(), seq.begin() + 4));
}

TEST_CASE("batcher: no shuffle and full batch") {
  Dataset d = numbered(5);
  Batcher plain(d, {.batch_size = 2, .shuffle = false});
  auto seq = drain(plain, 2);
  CHECK(seq == std::vector<std::vector<int32_t>>{{0, 1}, {2, 3}, {4}, {-1}, {0, 1}, {2, 3}, {4}, {-1}});
  Batcher full(d, {.batch_size = BatcherOptions::kFull});
  CHECK(full.batches_per_epoch() == 1);
  auto b = full.next();
  REQUIRE(b);
  CHECK(b->size() == 5);
  CHECK(&b->features() == &d.features);  // no copy of the whole set
  CHECK(!full.next());
  Batcher big(d, {.batch_size = 64});
  CHECK(big.batches_per_epoch() == 1);
  CHECK(big.next()->size() == 5);
}

TEST_CASE("batcher: save and restore the position gives the identical sequence") {
  Dataset d = numbered(23);
  for (bool prefetch : {true, false}) {
    Batcher ref(d, {.batch_size = 5, .shuffle = true, .seed = 9, .prefetch = prefetch});
    auto whole = drain(ref, 4);  // 5 batches + end marker per epoch
    for (int cut : {0, 3, 5, 6, 8, 13, 17}) {
      Batcher b(d, {.batch_size = 5, .shuffle = true, .seed = 9, .prefetch = prefetch});
      std::vector<std::vector<int32_t>> seen;
      for (int i = 0; i < cut; ++i) {
        auto x = b.next();
        seen.push_back(x ? rows(*x) : std::vector<int32_t>{-1});
      }
      BatchPosition pos = b.position();
      // A fresh batcher (as after a restart) resumes from the saved position.
      Batcher resumed(d, {.batch_size = 5, .shuffle = true, .seed = 12345, .prefetch = prefetch});
      resumed.restore(pos);
      CHECK(resumed.position() == pos);
      while (seen.size() < whole.size()) {
        auto x = resumed.next();
        seen.push_back(x ? rows(*x) : std::vector<int32_t>{-1});
      }
      CHECK_MESSAGE(seen == whole, "cut after " << cut);
    }
  }
  Batcher b(d, {.batch_size = 5, .shuffle = true, .seed = 9});
  CHECK_THROWS_AS(b.restore({0, 6, b.position().rng_state}), std::invalid_argument);
  CHECK_THROWS_AS(b.restore({0, 1, ""}), std::invalid_argument);
  CHECK_THROWS_AS(b.restore({0, 1, "garbage"}), std::invalid_argument);
}

TEST_CASE("dataset: validation split and subsets") {
  Dataset d = numbered(60);
  TrainValidation tv = split_validation(d, 15, 3);
  CHECK(tv.validation.size() == 15);
  CHECK(tv.train.size() == 45);
  std::set<int32_t> all;
  for (auto* part : {&tv.train, &tv.validation})
    for (int32_t r : part->labels.span<int32_t>()) all.insert(r);
  CHECK(all.size() == 60);  // disjoint and complete
  auto p = seeded_permutation(60, 3);
  std::set<int32_t> want(p.begin(), p.begin() + 15), got;
  for (int32_t r : tv.validation.labels.span<int32_t>()) got.insert(r);
  CHECK(got == want);
  CHECK(split_validation(d, 15, 3).validation.labels.bit_equal(tv.validation.labels));  // seeded
  CHECK(!split_validation(d, 15, 4).validation.labels.bit_equal(tv.validation.labels));
  Dataset first = subset_first(d, 7);
  CHECK(first.size() == 7);
  CHECK(first.labels.data<int32_t>()[6] == 6);
  Dataset rnd = subset_random(d, 7, 11);
  CHECK(rnd.size() == 7);
  CHECK(std::is_sorted(rnd.labels.data<int32_t>(), rnd.labels.data<int32_t>() + 7));
  CHECK_THROWS_AS(subset_first(d, 61), std::invalid_argument);
  CHECK_THROWS_AS(Dataset::make(Tensor(ElemType::f32, {3, 2}), Tensor(ElemType::i32, {4})), std::invalid_argument);
}

TEST_CASE("batcher: with a number of epochs, nothing is gathered or transformed past the last") {
  Dataset d = numbered(10);
  BatcherOptions o;
  o.batch_size = 4;
  o.seed = 3;
  o.epochs = 2;
  std::atomic<int> transformed{0};
  o.transform = [&](Batch&, std::span<const int64_t>, int64_t epoch) {
    CHECK(epoch < 2);
    ++transformed;
  };
  Batcher b(d, o);
  auto batches = drain(b, 2);
  CHECK(batches.size() == 8);  // 3 batches and the end of each epoch
  // The prefetching thread stopped at the last epoch's end: a third epoch is an error, not a wait.
  CHECK_THROWS_WITH_AS(b.next(), "no batches after the last epoch", std::logic_error);
  CHECK(transformed.load() == 6);
}

// Images kept as bytes (Dataset::decode) are decoded a batch at a time, as
// the batcher gathers them: each batch must hold the bits of its rows in the
// whole set decoded at once (the loss of a run does not depend on where batch
// boundaries fall), for both of the specs' image preprocessings.
TEST_CASE("batcher: rows stored as bytes, decoded per batch, are the bits of the whole set decoded at once") {
  const int64_t n = 37;  // batches of 8 end in a partial one; 4x4x3 = 48 values a row (not a whole vector tail)
  Tensor images(ElemType::u8, {n, 4, 4, 3});
  for (int64_t i = 0; i < images.numel(); ++i) images.data<uint8_t>()[i] = static_cast<uint8_t>((i * 97 + 13) % 256);
  Tensor labels(ElemType::i32, {n});
  for (int64_t i = 0; i < n; ++i) labels.data<int32_t>()[i] = static_cast<int32_t>(i);
  for (const char* mode : {"scale255", "standardize"}) {
    CAPTURE(mode);
    kiln::TrainSpec spec;
    spec.images = mode;
    if (spec.images == "scale255") spec.normalize_mean = {0.49, 0.48, 0.45}, spec.normalize_std = {0.25, 0.24, 0.26};
    const Tensor whole = driver::preprocess_images(spec, images);
    Dataset stored = Dataset::make(images, labels, [spec](const Tensor& rows) { return driver::preprocess_images(spec, rows); });
    const size_t row_bytes = whole.nbytes() / static_cast<size_t>(n);
    Batcher batcher(stored, {.batch_size = 8, .shuffle = true, .seed = 5});
    int64_t seen = 0;
    while (auto b = batcher.next()) {
      REQUIRE(b->features().dtype() == ElemType::f32);
      REQUIRE(b->features().nbytes() == row_bytes * static_cast<size_t>(b->size()));
      for (int64_t r = 0; r < b->size(); ++r) {
        const int32_t row = b->labels().data<int32_t>()[r];
        CHECK(std::memcmp(static_cast<const uint8_t*>(b->features().raw()) + static_cast<size_t>(r) * row_bytes,
                          static_cast<const uint8_t*>(whole.raw()) + static_cast<size_t>(row) * row_bytes, row_bytes) == 0);
      }
      seen += b->size();
    }
    CHECK(seen == n);
    const Tensor middle = stored.model_rows(10, 5);
    REQUIRE(middle.dtype() == ElemType::f32);
    REQUIRE(middle.nbytes() == 5 * row_bytes);
    CHECK(std::memcmp(middle.raw(), static_cast<const uint8_t*>(whole.raw()) + 10 * row_bytes, 5 * row_bytes) == 0);
    Tensor scratch;
    const Tensor& sample = stored.model_sample(scratch);
    REQUIRE(sample.rank() == whole.rank());
    CHECK(sample.dim(0) == 1);
    for (int i = 1; i < whole.rank(); ++i) CHECK(sample.dim(i) == whole.dim(i));
    // A full batch of stored bytes is decoded, not a view of the bytes.
    Batcher full(stored, {.batch_size = BatcherOptions::kFull});
    auto all = full.next();
    REQUIRE(all);
    REQUIRE(all->features().dtype() == ElemType::f32);
    REQUIRE(all->features().nbytes() == whole.nbytes());
    CHECK(std::memcmp(all->features().raw(), whole.raw(), whole.nbytes()) == 0);
  }
}
