// The zoo's data: augmentation (crop + flip as torchvision does them, the
// same draws on every call), byte-level text windows, and the spec keys that
// select them (Fashion-MNIST's default folder, text sets, normalization).
#include <doctest/doctest.h>

#include <set>

#include "compiler/driver/training_setup.h"
#include "compiler/frontend/train_spec.h"
#include "runtime/data/augment.h"
#include "runtime/data/text_windows.h"

using namespace kiln;

namespace {

// n images [n, 4, 5, 2]: pixel (i, y, x, c) = 1000 i + 100 y + 10 x + c + 1.
Tensor numbered_images(int64_t n) {
  Tensor t(ElemType::f32, {n, 4, 5, 2});
  float* p = t.data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 5; ++x)
        for (int64_t c = 0; c < 2; ++c) *p++ = static_cast<float>(1000 * i + 100 * y + 10 * x + c + 1);
  return t;
}

float at(const Tensor& t, int64_t i, int64_t y, int64_t x, int64_t c) { return t.data<float>()[((i * 4 + y) * 5 + x) * 2 + c]; }

TrainSpec spec_of(const std::string& body) {
  return parse_train_spec(R"({"format": "kiln.train/1", "graph": ")" KILN_SOURCE_DIR R"(/graphs/zoo/lenet5.json", )" + body + "}",
                          KILN_SOURCE_DIR "/graphs/zoo/train/case.json");
}

}  // namespace

TEST_CASE("augmentation: every output pixel is the padded image's, shifted by the draw and mirrored when flipped") {
  data::ImageAugmentation a;
  a.crop_padding = 2;
  a.horizontal_flip = true;
  a.fill = {-7.0f, -8.0f};
  a.seed = 3;
  const int64_t n = 64;
  Tensor images = numbered_images(n);
  std::vector<int64_t> rows(n);
  for (int64_t i = 0; i < n; ++i) rows[static_cast<size_t>(i)] = 100 + i;
  data::augment_images(images, rows, 5, a);
  std::set<int64_t> dys, dxs;
  int flips = 0;
  for (int64_t i = 0; i < n; ++i) {
    const data::AugmentDraw d = data::augment_draw(a, 5, 100 + i);
    dys.insert(d.dy), dxs.insert(d.dx), flips += d.flip;
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 5; ++x)
        for (int64_t c = 0; c < 2; ++c) {
          const int64_t sy = y + d.dy - 2, sx = (d.flip ? 4 - x : x) + d.dx - 2;
          const bool inside = sy >= 0 && sy < 4 && sx >= 0 && sx < 5;
          const float want = inside ? static_cast<float>(1000 * i + 100 * sy + 10 * sx + c + 1) : a.fill[static_cast<size_t>(c)];
          REQUIRE(at(images, i, y, x, c) == want);
        }
  }
  CHECK(dys == std::set<int64_t>{0, 1, 2, 3, 4});  // every offset of [0, 2 * padding] is drawn
  CHECK(dxs == std::set<int64_t>{0, 1, 2, 3, 4});
  CHECK(flips > n / 4);
  CHECK(flips < 3 * n / 4);
  // A draw depends on (seed, epoch, row) only.
  CHECK(data::augment_draw(a, 5, 117).dx == data::augment_draw(a, 5, 117).dx);
  int differ = 0;
  for (int64_t r = 0; r < 32; ++r) differ += data::augment_draw(a, 5, r).dy != data::augment_draw(a, 6, r).dy;
  CHECK(differ > 8);
}

TEST_CASE("text windows: tokens and next-byte targets, random starts inside the text, the same on every call") {
  std::vector<uint8_t> text;
  for (int i = 0; i < 1000; ++i) text.push_back(static_cast<uint8_t>('a' + i % 26));
  data::Dataset d = data::text_windows(text, 16);
  CHECK(d.size() == (1000 - 1) / 16);
  CHECK(d.features.dtype() == ElemType::i32);
  for (int64_t k = 0; k < d.size(); ++k)
    for (int64_t i = 0; i < 16; ++i) {
      REQUIRE(d.features.data<int32_t>()[k * 16 + i] == text[static_cast<size_t>(k * 16 + i)]);
      REQUIRE(d.labels.data<int32_t>()[k * 16 + i] == text[static_cast<size_t>(k * 16 + i + 1)]);
    }
  std::set<int64_t> shifts;
  for (int64_t row = 0; row < d.size(); ++row) {
    const int64_t start = data::random_window_start(1000, 16, 1, 2, row);
    CHECK(start >= row * 16);
    CHECK(start + 16 + 1 <= 1000);
    CHECK(start == data::random_window_start(1000, 16, 1, 2, row));
    shifts.insert(start - row * 16);
  }
  CHECK(shifts.size() > 8);
  // The transform writes the shifted windows into a gathered batch.
  data::Batch batch(d.gather(std::vector<int64_t>{3, 7}).features, d.gather(std::vector<int64_t>{3, 7}).labels);
  auto transform = data::random_window_transform(text, 16, 1);
  const std::vector<int64_t> rows = {3, 7};
  transform(batch, rows, 2);
  for (size_t j = 0; j < rows.size(); ++j) {
    const int64_t start = data::random_window_start(1000, 16, 1, 2, rows[j]);
    CHECK(batch.features().data<int32_t>()[j * 16] == text[static_cast<size_t>(start)]);
    CHECK(batch.labels().data<int32_t>()[j * 16 + 15] == text[static_cast<size_t>(start + 16)]);
  }
  CHECK_THROWS_WITH_AS(data::text_windows(std::vector<uint8_t>(10, 'a'), 16), doctest::Contains("too few"),
                       std::invalid_argument);
}

TEST_CASE("spec: data sets, normalization, augmentation and a step budget") {
  TrainSpec f = spec_of(R"("data": {"set": "fashion_mnist"}, "preprocessing": {"images": "scale255", "labels": "sparse"},
                           "batch_size": 32, "epochs": 1, "optimizer": {"kind": "adamw"})");
  CHECK(f.data_dir == kFashionMnistDir);
  CHECK(f.optimizer.lr == 1e-3);
  TrainSpec t = spec_of(R"("data": {"set": "text", "file": "kjv.txt.gz", "context": 64},
                           "batch_size": 8, "steps": 100, "optimizer": {"kind": "adamw"})");
  CHECK(t.context == 64);
  CHECK(t.steps == 100);
  CHECK(t.text_file == KILN_SOURCE_DIR "/graphs/zoo/train/kjv.txt.gz");
  CHECK(t.text_validation_fraction == 0.1);
  TrainSpec c = spec_of(R"("data": {"set": "cifar10", "dir": "d"},
                           "preprocessing": {"images": "scale255", "labels": "sparse", "normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 1]}},
                           "augmentation": {"random_crop": {"padding": 4}, "horizontal_flip": true},
                           "batch_size": 8, "epochs": 1, "optimizer": {"kind": "sgd"})");
  CHECK(c.crop_padding == 4);
  CHECK(c.horizontal_flip);
  CHECK(c.normalize_std == std::vector<double>{0.25, 0.5, 1});
  // Normalization: (x / 255 - mean[c]) / std[c] over the last axis.
  Tensor raw(ElemType::u8, {1, 1, 1, 3});
  raw.data<uint8_t>()[0] = 255, raw.data<uint8_t>()[1] = 0, raw.data<uint8_t>()[2] = 51;
  Tensor x = driver::preprocess_images(c, raw);
  CHECK(x.data<float>()[0] == doctest::Approx(2.0));
  CHECK(x.data<float>()[1] == doctest::Approx(-1.0));
  CHECK(x.data<float>()[2] == doctest::Approx(-0.3));
  auto problem = [&](const std::string& body) {
    try {
      spec_of(body);
    } catch (const SpecError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(problem(R"("data": {"set": "text", "file": "f", "context": 8}, "preprocessing": {"images": "scale255", "labels": "sparse"},
                  "batch_size": 8, "steps": 10, "optimizer": {"kind": "adamw"})").find("/preprocessing") != std::string::npos);
  CHECK(problem(R"("data": {"set": "text", "file": "f"}, "batch_size": 8, "steps": 10, "optimizer": {"kind": "adamw"})")
            .find("/data/context") != std::string::npos);
  CHECK(problem(R"("data": {"set": "cifar10", "dir": "d"}, "preprocessing": {"images": "scale255", "labels": "sparse",
                  "normalize": {"mean": [0.5], "std": [0.1, 0.2]}}, "batch_size": 8, "epochs": 1, "optimizer": {"kind": "sgd"})")
            .find("/preprocessing/normalize") != std::string::npos);
  CHECK(problem(R"("data": {"set": "mnist", "dir": "d"}, "preprocessing": {"images": "standardize", "labels": "sparse"},
                  "augmentation": {"horizontal_flip": true}, "batch_size": 8, "epochs": 1, "optimizer": {"kind": "sgd"})")
            .find("/augmentation") != std::string::npos);
  CHECK(problem(R"("data": {"set": "mnist", "dir": "d"}, "preprocessing": {"images": "scale255", "labels": "sparse"},
                  "batch_size": 8, "optimizer": {"kind": "sgd"})").find("/epochs") != std::string::npos);
}
