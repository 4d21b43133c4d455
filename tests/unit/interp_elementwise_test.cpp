// Reference kernels of the elementwise family: broadcasting arithmetic, unary
// math, the stable sigmoid, compare/select/cast, and f32 rounding vs f64.
#include <limits>

#include "tests/unit/interp_helpers.h"

using namespace kiln;
using namespace kiln::interp_test;

TEST_CASE("interp add broadcasts (2x3) + (3) along the rows") {
  OpGraph t;
  NodeId x = t.in("x", val({2, 3}, {1, 2, 3, 4, 5, 6}));
  NodeId y = t.in("y", val({3}, {10, 20, 30}));
  check_value(t.run(t.op("add", {x, y})), {2, 3}, {11, 22, 33, 14, 25, 36});
}

TEST_CASE("interp mul broadcasts (2x1) * (1x3) to an outer product") {
  OpGraph t;
  NodeId x = t.in("x", val({2, 1}, {1, 2}));
  NodeId y = t.in("y", val({1, 3}, {10, 20, 30}));
  check_value(t.run(t.op("mul", {x, y})), {2, 3}, {10, 20, 30, 20, 40, 60});
}

TEST_CASE("interp sub and div with a scalar on either side") {
  OpGraph t;
  NodeId x = t.in("x", val({2, 2}, {1, 2, 3, 4}));
  NodeId s = t.b.constant(8.0);
  check_value(t.run(t.op("sub", {x, s})), {2, 2}, {-7, -6, -5, -4});
  check_value(t.run(t.op("div", {s, x})), {2, 2}, {8, 4, 8.0 / 3.0, 2});
  check_value(t.run(t.op("sub", {s, s})), {}, {0});
}

TEST_CASE("interp broadcasting an open batch against a static row") {
  OpGraph t;
  NodeId x = t.in("x", val({3, 2}, {1, 2, 3, 4, 5, 6}), {-1, 2});
  NodeId y = t.in("y", val({2}, {100, 200}));
  check_value(t.run(t.op("add", {x, y})), {3, 2}, {101, 202, 103, 204, 105, 206});
}

TEST_CASE("interp integer div truncates toward zero - division by zero is an error") {
  OpGraph t;
  NodeId x = t.in("x", val({4}, {7, -7, 6, 1}, DType::i32));
  NodeId y = t.in("y", val({4}, {2, 2, -4, 3}, DType::i32));
  check_value(t.run(t.op("div", {x, y})), {4}, {3, -3, -1, 0});
  OpGraph z;
  NodeId a = z.in("a", val({2}, {1, 2}, DType::i32));
  NodeId b = z.in("b", val({2}, {1, 0}, DType::i32));
  CHECK_THROWS_WITH(z.run(z.op("div", {a, b})), doctest::Contains("integer division by zero"));
}

TEST_CASE("interp maximum broadcasts and keeps ties") {
  OpGraph t;
  NodeId x = t.in("x", val({2, 2}, {-1, 2, 0, 5}));
  NodeId zero = t.b.constant(0.0);
  check_value(t.run(t.op("maximum", {x, zero})), {2, 2}, {0, 2, 0, 5});
  NodeId y = t.in("y", val({2}, {2, 2}));
  check_value(t.run(t.op("maximum", {x, y})), {2, 2}, {2, 2, 2, 5});
}

TEST_CASE("interp unary math: neg exp log sqrt square") {
  OpGraph t;
  NodeId x = t.in("x", val({3}, {1, 2.25, -3}));
  check_value(t.run(t.op("neg", {x})), {3}, {-1, -2.25, 3});
  check_value(t.run(t.op("exp", {x})), {3}, {std::exp(1.0), std::exp(2.25), std::exp(-3.0)});
  check_value(t.run(t.op("square", {x})), {3}, {1, 5.0625, 9});
  NodeId p = t.in("p", val({3}, {1, 2.25, 16}));
  check_value(t.run(t.op("sqrt", {p})), {3}, {1, 1.5, 4});
  NodeId e = t.in("e", val({2}, {std::exp(2.0), 1}));
  check_value(t.run(t.op("log", {e})), {2}, {2, 0});
}

TEST_CASE("interp unary math edge cases: log(0) = -inf - sqrt of a negative is NaN - integer square") {
  OpGraph t;
  NodeId x = t.in("x", val({2}, {0, -1}));
  Value logs = t.run(t.op("log", {x}));
  CHECK(logs.data[0] == -std::numeric_limits<double>::infinity());
  Value roots = t.run(t.op("sqrt", {x}));
  CHECK(roots.data[0] == 0);
  CHECK(std::isnan(roots.data[1]));
  NodeId i = t.in("i", val({2}, {-4, 3}, DType::i32));
  Value sq = t.run(t.op("square", {i}));
  CHECK(sq.dtype == DType::i32);
  check_value(sq, {2}, {16, 9});
}

TEST_CASE("interp sigmoid matches 1/(1+e^-x) and stays finite in both tails") {
  OpGraph t;
  NodeId x = t.in("x", val({5}, {0, 2, -2, 100, -100}));
  Value s = t.run(t.op("sigmoid", {x}));
  auto direct = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  CHECK(s.data[0] == 0.5);
  CHECK(s.data[1] == doctest::Approx(direct(2)).epsilon(1e-14));
  CHECK(s.data[2] == doctest::Approx(direct(-2)).epsilon(1e-14));
  CHECK(s.data[3] == 1.0);
  // e^-100 / (1 + e^-100): tiny but exact, not 0 and not NaN.
  CHECK(s.data[4] == doctest::Approx(std::exp(-100.0)).epsilon(1e-14));
}

TEST_CASE("interp sigmoid of +-1000 gives 1 and 0 - never NaN - in f32 and f64") {
  for (Precision p : {Precision::f32, Precision::f64}) {
    OpGraph t;
    NodeId x = t.in("x", val({2}, {1000, -1000}));
    Value s = t.run(t.op("sigmoid", {x}), p);
    CHECK(s.data[0] == 1.0);
    CHECK(s.data[1] == 0.0);
  }
}

TEST_CASE("interp compare: every kind - broadcast against a scalar - gives bool 0/1") {
  OpGraph t;
  NodeId x = t.in("x", val({3}, {1, 2, 3}));
  NodeId two = t.b.constant(2.0);
  std::map<std::string, std::vector<double>> want = {{"lt", {1, 0, 0}}, {"le", {1, 1, 0}}, {"gt", {0, 0, 1}},
                                                     {"ge", {0, 1, 1}}, {"eq", {0, 1, 0}}, {"ne", {1, 0, 1}}};
  for (auto& [kind, expected] : want) {
    INFO("kind " << kind);
    Value v = t.run(t.op("compare", {x, two}, {{"kind", kind}}));
    CHECK(v.dtype == DType::boolean);
    check_value(v, {3}, expected);
  }
}

TEST_CASE("interp compare broadcasts (2x1) against (3) and NaN compares unequal") {
  OpGraph t;
  NodeId x = t.in("x", val({2, 1}, {1, 5}));
  NodeId y = t.in("y", val({3}, {0, 1, 6}));
  check_value(t.run(t.op("compare", {x, y}, {{"kind", "gt"}})), {2, 3}, {1, 0, 0, 1, 1, 0});
  NodeId n = t.in("n", val({1}, {std::nan("")}));
  check_value(t.run(t.op("compare", {n, n}, {{"kind", "eq"}})), {1}, {0});
  check_value(t.run(t.op("compare", {n, n}, {{"kind", "ne"}})), {1}, {1});
}

TEST_CASE("interp select picks x where cond - else y - with broadcasting") {
  OpGraph t;
  NodeId c = t.in("c", val({2, 2}, {1, 0, 0, 1}, DType::boolean));
  NodeId x = t.in("x", val({2, 2}, {1, 2, 3, 4}));
  NodeId y = t.b.constant(-1.0);
  check_value(t.run(t.op("select", {c, x, y})), {2, 2}, {1, -1, -1, 4});
  NodeId row = t.in("row", val({2}, {1, 0}, DType::boolean));  // a [2] mask across both rows
  check_value(t.run(t.op("select", {row, x, y})), {2, 2}, {1, -1, 3, -1});
}

TEST_CASE("interp cast: float -> int truncates toward zero - anything -> bool is != 0 - bool -> 0/1") {
  OpGraph t;
  NodeId x = t.in("x", val({5}, {1.7, -1.7, 0, 2.5, -0.2}));
  Value i = t.run(t.op("cast", {x}, {{"dtype", "i32"}}));
  CHECK(i.dtype == DType::i32);
  check_value(i, {5}, {1, -1, 0, 2, 0});
  check_value(t.run(t.op("cast", {x}, {{"dtype", "bool"}})), {5}, {1, 1, 0, 1, 1});
  NodeId m = t.in("m", val({3}, {1, 0, 1}, DType::boolean));
  Value f = t.run(t.op("cast", {m}, {{"dtype", "f32"}}));
  CHECK(f.dtype == DType::f32);
  check_value(f, {3}, {1, 0, 1});
  NodeId n = t.in("n", val({2}, {-3, 7}, DType::i32));
  check_value(t.run(t.op("cast", {n}, {{"dtype", "f64"}})), {2}, {-3, 7});
}

TEST_CASE("interp f32 mode rounds every f32 result to float - f64 mode does not") {
  auto build = [](OpGraph& t) {
    NodeId a = t.in("a", val({1}, {0.1}));
    NodeId b = t.in("b", val({1}, {0.2}));
    NodeId three = t.b.constant(3.0);
    return t.op("div", {t.op("add", {a, b}), three});
  };
  OpGraph t32, t64;
  Value v32 = t32.run(build(t32), Precision::f32);
  Value v64 = t64.run(build(t64), Precision::f64);
  // Each step rounded to float: the fed values, the sum, the quotient.
  float a = 0.1f, b = 0.2f;
  float sum = a + b;
  float want32 = sum / 3.0f;
  CHECK(v32.data[0] == static_cast<double>(want32));
  CHECK(v64.data[0] == (0.1 + 0.2) / 3.0);
  CHECK(v32.data[0] != v64.data[0]);
}

TEST_CASE("interp f32 mode leaves f64-typed values unrounded") {
  OpGraph t;
  NodeId x = t.in("x", val({1}, {1.0}, DType::f64));
  NodeId three = t.b.constant(3.0, DType::f64);
  Value v = t.run(t.op("div", {x, three}), Precision::f32);
  CHECK(v.data[0] == 1.0 / 3.0);
}
