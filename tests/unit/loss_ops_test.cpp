// The new losses on values worked out here: nll_loss's weighted mean over the
// examples kept (PyTorch's "mean"), softmax_cross_entropy and
// sparse_softmax_cross_entropy with label smoothing.
#include <doctest/doctest.h>

#include <cmath>

#include "codegen_helpers.h"

using namespace kiln;
using codegen_test::JitCase;

TEST_CASE("losses: nll_loss weights and ignore_index, softmax_cross_entropy and its sparse form with label smoothing") {
  JitCase t(3, 3);
  NodeId logp = t.input("logp", {-1, 3});
  t.feeds["logp"].data = {-0.1, -2.0, -3.0, -1.5, -0.5, -2.5, -0.7, -0.9, -1.9};
  NodeId labels = t.input("labels", {-1}, 0, 1, DType::i32);
  t.feeds["labels"].data = {0, 2, 1};
  t.out("nll", t.op("nll_loss", {logp, labels}, {{"weights", {1.0, 2.0, 3.0}}, {"ignore_index", 1}}));
  NodeId logits = t.input("logits", {-1, 3});
  t.feeds["logits"].data = {1, 2, 3, 0, 0, 0, -1, 1, 0};
  NodeId targets = t.input("targets", {-1, 3});
  t.feeds["targets"].data = {0, 0, 1, 1, 0, 0, 0, 1, 0};
  t.out("smoothed", t.op("softmax_cross_entropy", {logits, targets}, {{"label_smoothing", 0.3}}));
  NodeId classes = t.input("classes", {-1}, 0, 2, DType::i32);
  t.feeds["classes"].data = {2, 0, 1};  // the one-hot rows of targets
  t.out("sparse_smoothed", t.op("sparse_softmax_cross_entropy", {logits, classes}, {{"label_smoothing", 0.3}}));
  t.out("sparse", t.op("sparse_softmax_cross_entropy", {logits, classes}));
  auto got = t.check(1e-5);
  // Kept: example 0 (class 0, weight 1) and example 1 (class 2, weight 3); example 2 has the ignored label.
  CHECK(got.at("nll").data[0] == doctest::Approx((1 * 0.1 + 3 * 2.5) / 4).epsilon(1e-6));
  double want = 0, want_unsmoothed = 0;
  const double z[3][3] = {{1, 2, 3}, {0, 0, 0}, {-1, 1, 0}};
  const double y[3][3] = {{0, 0, 1}, {1, 0, 0}, {0, 1, 0}};
  for (int i = 0; i < 3; ++i) {
    double lse = std::log(std::exp(z[i][0]) + std::exp(z[i][1]) + std::exp(z[i][2]));
    for (int c = 0; c < 3; ++c) {
      want -= (0.7 * y[i][c] + 0.1) * (z[i][c] - lse);
      want_unsmoothed -= y[i][c] * (z[i][c] - lse);
    }
  }
  CHECK(got.at("smoothed").data[0] == doctest::Approx(want / 3).epsilon(1e-5));
  // Integer labels smoothed as their one-hot rows are (PyTorch: cross_entropy(logits, y, label_smoothing=0.3)).
  CHECK(got.at("sparse_smoothed").data[0] == doctest::Approx(want / 3).epsilon(1e-5));
  CHECK(got.at("sparse").data[0] == doctest::Approx(want_unsmoothed / 3).epsilon(1e-5));
  CHECK(want_unsmoothed / 3 != doctest::Approx(want / 3).epsilon(1e-3));
}
