#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "runtime/data/preprocess.h"

using namespace kiln;
using namespace kiln::data;

TEST_CASE("preprocess: per-image standardization by hand") {
  // One 1x2x2 image {0, 2, 4, 6}: mean 3, population variance 5.
  Tensor img(ElemType::u8, {1, 2, 2, 1});
  uint8_t v[4] = {0, 2, 4, 6};
  std::copy(v, v + 4, img.data<uint8_t>());
  Tensor y = per_image_standardize(img);
  REQUIRE(y.shape() == std::vector<int64_t>{1, 4});
  const float s = std::sqrt(5.0f);
  CHECK(y.data<float>()[0] == doctest::Approx(-3 / s));
  CHECK(y.data<float>()[3] == doctest::Approx(3 / s));
  // A constant image: std 0 -> divided by 1/sqrt(N), not by zero.
  Tensor flat(ElemType::u8, {2, 3});
  for (auto& b : flat.span<uint8_t>()) b = 7;
  flat.data<uint8_t>()[5] = 8;  // second image {7, 7, 8}
  Tensor z = per_image_standardize(flat);
  CHECK(z.data<float>()[0] == 0.0f);
  const double m = 22.0 / 3, sd = std::sqrt((2 * (7 - m) * (7 - m) + (8 - m) * (8 - m)) / 3);
  CHECK(z.data<float>()[5] == doctest::Approx((8 - m) / std::max(sd, 1 / std::sqrt(3.0))));
}

TEST_CASE("preprocess: standardization and /255 match a scalar loop on random images") {
  std::mt19937 rng(5);
  // 37 values per image: not a multiple of any SIMD width, so the tails run.
  const int n = 9, d = 37;
  Tensor img(ElemType::u8, {n, d});
  for (auto& b : img.span<uint8_t>()) b = static_cast<uint8_t>(rng() % 256);
  img.data<uint8_t>()[0 * d + 5] = 0;
  for (int j = 0; j < d; ++j) img.data<uint8_t>()[4 * d + j] = 200;  // a constant image among them
  Tensor y = per_image_standardize(img);
  Tensor u = scale_unit(img);
  CHECK(u.shape() == img.shape());
  for (int i = 0; i < n; ++i) {
    const uint8_t* x = img.data<uint8_t>() + i * d;
    double mean = 0, var = 0;
    for (int j = 0; j < d; ++j) mean += x[j];
    mean /= d;
    for (int j = 0; j < d; ++j) var += (x[j] - mean) * (x[j] - mean);
    var /= d;
    const double adj = std::max(std::sqrt(var), 1.0 / std::sqrt(double(d)));
    for (int j = 0; j < d; ++j) {
      CHECK(y.data<float>()[i * d + j] == doctest::Approx((x[j] - mean) / adj).epsilon(1e-5));
      CHECK(u.data<float>()[i * d + j] == doctest::Approx(x[j] / 255.0).epsilon(1e-6));
    }
  }
}

TEST_CASE("preprocess: one-hot and flatten") {
  Tensor l(ElemType::i32, {3});
  l.data<int32_t>()[0] = 2;
  l.data<int32_t>()[1] = 0;
  l.data<int32_t>()[2] = 9;
  Tensor o = one_hot(l, 10);
  REQUIRE(o.shape() == std::vector<int64_t>{3, 10});
  float sum = 0;
  for (float v : o.span<float>()) sum += v;
  CHECK(sum == 3.0f);
  CHECK(o.data<float>()[0 * 10 + 2] == 1.0f);
  CHECK(o.data<float>()[1 * 10 + 0] == 1.0f);
  CHECK(o.data<float>()[2 * 10 + 9] == 1.0f);
  CHECK_THROWS_WITH_AS(one_hot(l, 5), doctest::Contains("label 9 of item 2"), std::invalid_argument);
  Tensor t(ElemType::f32, {4, 2, 3});
  flatten_rows(t);
  CHECK(t.shape() == std::vector<int64_t>{4, 6});
}
