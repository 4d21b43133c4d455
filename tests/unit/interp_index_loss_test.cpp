// one_hot and argmax, and the composites built on them: softmax, log_softmax,
// the losses and correct_count, checked against direct formulas.
#include "tests/unit/interp_helpers.h"

using namespace kiln;
using namespace kiln::interp_test;

TEST_CASE("interp one_hot: labels become rows of the identity") {
  OpGraph t;
  NodeId y = t.in("y", val({3}, {0, 2, 1}, DType::i32));
  Value v = t.run(t.op("one_hot", {y}, {{"depth", 3}}));
  CHECK(v.dtype == DType::f32);
  check_value(v, {3, 3}, {1, 0, 0, 0, 0, 1, 0, 1, 0});
}

TEST_CASE("interp one_hot: a label outside 0..depth-1 gives a zero row - labels of rank 2") {
  OpGraph t;
  NodeId y = t.in("y", val({4}, {-1, 3, 2, 100}, DType::i32));
  check_value(t.run(t.op("one_hot", {y}, {{"depth", 3}})), {4, 3}, {0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0});
  NodeId m = t.in("m", val({2, 2}, {1, 0, 0, 1}, DType::i32));
  check_value(t.run(t.op("one_hot", {m}, {{"depth", 2}, {"dtype", "f64"}})), {2, 2, 2}, {0, 1, 1, 0, 1, 0, 0, 1});
}

TEST_CASE("interp argmax along the last axis and along axis 0") {
  OpGraph t;
  NodeId x = t.in("x", val({2, 3}, {1, 7, 3, 9, 2, 4}));
  Value last = t.run(t.op("argmax", {x}));
  CHECK(last.dtype == DType::i32);
  check_value(last, {2}, {1, 0});
  check_value(t.run(t.op("argmax", {x}, {{"axis", 0}})), {3}, {1, 0, 1});
}

TEST_CASE("interp argmax ties go to the first maximum - all-negative rows") {
  OpGraph t;
  NodeId x = t.in("x", val({3, 3}, {1, 3, 3, 2, 2, 2, -5, -1, -1}));
  check_value(t.run(t.op("argmax", {x})), {3}, {1, 0, 1});
  check_value(t.run(t.op("argmax", {x}, {{"axis", 0}})), {3}, {1, 0, 0});
}

TEST_CASE("interp softmax and log_softmax match the direct formulas") {
  OpGraph t;
  NodeId x = t.in("x", val({2, 3}, {1, 2, 3, -1, 0, 0.5}));
  Value s = t.run(t.op("softmax", {x}));
  Value ls = t.run(t.op("log_softmax", {x}));
  std::vector<double> rows[2] = {{1, 2, 3}, {-1, 0, 0.5}};
  std::vector<double> want_s, want_ls;
  for (auto& r : rows) {
    double z = std::exp(r[0]) + std::exp(r[1]) + std::exp(r[2]);
    for (double v : r) want_s.push_back(std::exp(v) / z), want_ls.push_back(v - std::log(z));
  }
  check_value(s, {2, 3}, want_s, 1e-14);
  check_value(ls, {2, 3}, want_ls, 1e-14);
}

TEST_CASE("interp causal softmax: row i of each [Tq, Tk] matrix keeps columns j <= i, zero past them") {
  OpGraph t;
  // Two [2, 3] matrices (Tq 2 < Tk 3: the last column is masked in both rows).
  NodeId x = t.in("x", val({2, 2, 3}, {1, 2, 3, -1, 0, 0.5, 4, 9, 9, 0, 1, 9}));
  Value s = t.run(t.op("softmax", {x}, {{"causal", true}}));
  auto sm2 = [](double a, double b) { return std::vector<double>{std::exp(a) / (std::exp(a) + std::exp(b)), std::exp(b) / (std::exp(a) + std::exp(b))}; };
  std::vector<double> want = {1, 0, 0};
  for (double v : sm2(-1, 0)) want.push_back(v);
  want.push_back(0);
  want.insert(want.end(), {1, 0, 0});
  for (double v : sm2(0, 1)) want.push_back(v);
  want.push_back(0);
  check_value(s, {2, 2, 3}, want, 1e-14);
  CHECK_THROWS_WITH(t.op("softmax", {x}, {{"axis", 1}, {"causal", true}}),
                       doctest::Contains("causal needs the last axis"));
}

TEST_CASE("interp softmax and log_softmax and cross-entropy stay finite and exact for logits of +-1e4") {
  for (Precision p : {Precision::f32, Precision::f64}) {
    OpGraph t;
    NodeId x = t.in("x", val({2, 3}, {1e4, 0, -1e4, -1e4, 1e4, 1e4}));
    check_value(t.run(t.op("softmax", {x}), p), {2, 3}, {1, 0, 0, 0, 0.5, 0.5});
    // log_softmax = x - max - log(sum exp(x - max)): row 2 has two maxima, so log 2.
    check_value(t.run(t.op("log_softmax", {x}), p), {2, 3},
                {0, -1e4, -2e4, -2e4 - std::log(2.0), -std::log(2.0), -std::log(2.0)}, 1e-7);
    NodeId y = t.in("y", val({2}, {2, 1}, DType::i32));
    // -log softmax: row 1 label 2 -> 2e4; row 2 label 1 -> log 2; mean over 2 rows.
    Value ce = t.run(t.op("sparse_softmax_cross_entropy", {x, y}), p);
    check_value(ce, {}, {(2e4 + std::log(2.0)) / 2}, 1e-7);
  }
}

TEST_CASE("interp sparse_softmax_cross_entropy for moderate logits equals -mean log p(label)") {
  OpGraph t;
  NodeId x = t.in("x", val({2, 3}, {0.5, -1, 2, 3, 0, 1}), {-1, 3});
  NodeId y = t.in("y", val({2}, {0, 0}, DType::i32), {-1});
  auto logp = [](std::vector<double> r, int k) {
    double z = 0;
    for (double v : r) z += std::exp(v);
    return std::log(std::exp(r[static_cast<size_t>(k)]) / z);
  };
  double want = -(logp({0.5, -1, 2}, 0) + logp({3, 0, 1}, 0)) / 2;
  check_value(t.run(t.op("sparse_softmax_cross_entropy", {x, y})), {}, {want}, 1e-14);
}

TEST_CASE("interp binary_cross_entropy from logits equals the direct formula for moderate logits") {
  OpGraph t;
  std::vector<double> x = {-2, 0.5, 3, 0}, z = {0, 1, 1, 1};
  NodeId xi = t.in("x", val({4, 1}, x), {-1, 1});
  NodeId zi = t.in("z", val({4, 1}, z), {-1, 1});
  double want = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    double s = 1 / (1 + std::exp(-x[i]));
    want += -(z[i] * std::log(s) + (1 - z[i]) * std::log(1 - s));
  }
  want /= 4;
  check_value(t.run(t.op("binary_cross_entropy", {xi, zi})), {}, {want}, 1e-14);
}

TEST_CASE("interp binary_cross_entropy stays finite for logits of +-100 (the direct formula would not)") {
  OpGraph t;
  NodeId xi = t.in("x", val({2, 1}, {100, -100}));
  NodeId zi = t.in("z", val({2, 1}, {0, 0}, DType::i32));  // integer labels are cast
  // wrong with confidence 100 costs ~100; right with confidence 100 costs ~e^-100
  check_value(t.run(t.op("binary_cross_entropy", {xi, zi})), {}, {(100 + std::log1p(std::exp(-100.0)) + std::log1p(std::exp(-100.0))) / 2},
              1e-14);
}

TEST_CASE("interp mse sums squared errors per example and averages over the batch") {
  OpGraph t;
  NodeId p = t.in("p", val({2, 2}, {1, 2, 3, 4}), {-1, 2});
  NodeId q = t.in("q", val({2, 2}, {0, 2, 1, 1}), {-1, 2});
  // (1 + 0 + 4 + 9) / 2
  check_value(t.run(t.op("mse", {p, q})), {}, {7});
  OpGraph one;  // a batch of one: no averaging left
  NodeId a = one.in("a", val({1, 3}, {1, 1, 1}), {-1, 3});
  NodeId b = one.in("b", val({1, 3}, {0, 0, 3}), {-1, 3});
  check_value(one.run(one.op("mse", {a, b})), {}, {6});
}

TEST_CASE("interp l2_penalty is reg times the sum of squares of every tensor") {
  OpGraph t;
  NodeId w1 = t.in("w1", val({2}, {1, -2}));
  NodeId w2 = t.in("w2", val({1, 1}, {3}));
  check_value(t.run(t.op("l2_penalty", {w1, w2}, {{"reg", 0.5}})), {}, {7});
  check_value(t.run(t.op("l2_penalty", {w2}, {{"reg", 0.0}})), {}, {0});
}

TEST_CASE("interp correct_count for sparse and one-hot and binary labels") {
  OpGraph t;
  NodeId logits = t.in("logits", val({3, 2}, {1, 2, 3, 0, 0, 0}));
  NodeId sparse = t.in("sparse", val({3}, {1, 1, 0}, DType::i32));
  // argmax rows: 1, 0, 0 (tie -> first) -> hits 1, 0, 1
  Value c = t.run(t.op("correct_count", {logits, sparse}));
  CHECK(c.dtype == DType::f32);
  check_value(c, {}, {2});
  NodeId onehot = t.in("onehot", val({3, 2}, {0, 1, 0, 1, 0, 1}));
  check_value(t.run(t.op("correct_count", {logits, onehot}, {{"labels", "onehot"}})), {}, {1});
  NodeId b = t.in("b", val({4, 1}, {0.3, -1, 2, 0}));
  NodeId z = t.in("z", val({4, 1}, {1, 1, 0, 0}));
  // predicted positive iff logit > 0: 1, 0, 1, 0 vs 1, 1, 0, 0
  check_value(t.run(t.op("correct_count", {b, z}, {{"labels", "binary"}})), {}, {2});
}

TEST_CASE("interp relu clamps negatives to 0 and keeps 0 and positives") {
  OpGraph t;
  NodeId x = t.in("x", val({4}, {-2, 0, 0.5, -1e-30}));
  check_value(t.run(t.op("relu", {x})), {4}, {0, 0, 0.5, 0});
}

TEST_CASE("interp dense is x @ w + b with the bias broadcast over an open batch") {
  OpGraph t;
  NodeId x = t.in("x", val({2, 2}, {1, 2, 3, 4}), {-1, 2});
  NodeId w = t.in("w", val({2, 3}, {1, 0, -1, 0, 1, 1}));
  NodeId b = t.in("b", val({3}, {10, 20, 30}));
  // rows: [1, 2, 1] + b, [3, 4, 1] + b
  check_value(t.run(t.op("dense", {x, w, b})), {2, 3}, {11, 22, 31, 13, 24, 31});
}
