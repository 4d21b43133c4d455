// Reference kernels of matmul, the reductions, the layout ops and the sources
// (constant, dim_size), including the open batch dimension.
#include "tests/unit/interp_helpers.h"

using namespace kiln;
using namespace kiln::interp_test;

TEST_CASE("interp matmul of a 2x3 and a 3x2 matrix - by hand") {
  OpGraph t;
  NodeId a = t.in("a", val({2, 3}, {1, 2, 3, 4, 5, 6}));
  NodeId b = t.in("b", val({3, 2}, {7, 8, 9, 10, 11, 12}));
  // [1*7+2*9+3*11, 1*8+2*10+3*12; 4*7+5*9+6*11, 4*8+5*10+6*12]
  check_value(t.run(t.op("matmul", {a, b})), {2, 2}, {58, 64, 139, 154});
}

TEST_CASE("interp matmul with transpose_a and transpose_b gives the same product") {
  OpGraph t;
  NodeId at = t.in("at", val({3, 2}, {1, 4, 2, 5, 3, 6}));       // a^T
  NodeId bt = t.in("bt", val({2, 3}, {7, 9, 11, 8, 10, 12}));     // b^T
  NodeId a = t.in("a", val({2, 3}, {1, 2, 3, 4, 5, 6}));
  NodeId b = t.in("b", val({3, 2}, {7, 8, 9, 10, 11, 12}));
  check_value(t.run(t.op("matmul", {at, b}, {{"transpose_a", true}})), {2, 2}, {58, 64, 139, 154});
  check_value(t.run(t.op("matmul", {a, bt}, {{"transpose_b", true}})), {2, 2}, {58, 64, 139, 154});
  check_value(t.run(t.op("matmul", {at, bt}, {{"transpose_a", true}, {"transpose_b", true}})), {2, 2},
              {58, 64, 139, 154});
}

TEST_CASE("interp matmul edge cases: K = 1 (outer product) and an open batch of 1") {
  OpGraph t;
  NodeId col = t.in("col", val({2, 1}, {2, 3}));
  NodeId row = t.in("row", val({1, 3}, {1, 10, 100}));
  check_value(t.run(t.op("matmul", {col, row})), {2, 3}, {2, 20, 200, 3, 30, 300});
  OpGraph u;
  NodeId x = u.in("x", val({1, 2}, {1, -1}), {-1, 2});
  NodeId w = u.in("w", val({2, 2}, {1, 2, 3, 4}));
  check_value(u.run(u.op("matmul", {x, w})), {1, 2}, {-2, -2});
}

// x[i][j][k] = 100 i + 10 j + k over a [2,2,3] tensor.
static Value cube() {
  std::vector<double> d;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 3; ++k) d.push_back(100 * i + 10 * j + k);
  return val({2, 2, 3}, d);
}

TEST_CASE("interp reduce_sum over each axis - with and without keepdims") {
  OpGraph t;
  NodeId x = t.in("x", cube());
  // axis 0: x[0][j][k] + x[1][j][k] = 100 + 2(10 j + k)
  check_value(t.run(t.op("reduce_sum", {x}, {{"axes", {0}}})), {2, 3}, {100, 102, 104, 120, 122, 124});
  // axis 1: 2(100 i + k) + 10
  check_value(t.run(t.op("reduce_sum", {x}, {{"axes", {1}}})), {2, 3}, {10, 12, 14, 210, 212, 214});
  // axis 2 (as -1): 3(100 i + 10 j) + 3
  check_value(t.run(t.op("reduce_sum", {x}, {{"axes", {-1}}, {"keepdims", true}})), {2, 2, 1}, {3, 33, 303, 333});
  check_value(t.run(t.op("reduce_sum", {x}, {{"axes", {0, 2}}, {"keepdims", true}})), {1, 2, 1}, {306, 366});
  // every axis: 6*100 + 6*10 + 4*3
  check_value(t.run(t.op("reduce_sum", {x})), {}, {672});
  check_value(t.run(t.op("reduce_sum", {x}, {{"keepdims", true}})), {1, 1, 1}, {672});
}

TEST_CASE("interp reduce_max over each axis - all-negative values and ties") {
  OpGraph t;
  NodeId x = t.in("x", cube());
  check_value(t.run(t.op("reduce_max", {x}, {{"axes", {0}}})), {2, 3}, {100, 101, 102, 110, 111, 112});
  check_value(t.run(t.op("reduce_max", {x}, {{"axes", {1}}, {"keepdims", true}})), {2, 1, 3}, {10, 11, 12, 110, 111, 112});
  check_value(t.run(t.op("reduce_max", {x}, {{"axes", {2}}})), {2, 2}, {2, 12, 102, 112});
  NodeId n = t.in("n", val({2, 2}, {-5, -3, -7, -7}));
  check_value(t.run(t.op("reduce_max", {n}, {{"axes", {1}}})), {2}, {-3, -7});
  check_value(t.run(t.op("reduce_max", {n})), {}, {-3});
}

TEST_CASE("interp reduce_mean with an open batch divides by the run-time batch size") {
  OpGraph t;
  NodeId x = t.in("x", val({3, 2}, {1, 2, 3, 4, 5, 9}), {-1, 2});
  check_value(t.run(t.op("reduce_mean", {x}, {{"axes", {0}}})), {2}, {3, 5});
  check_value(t.run(t.op("reduce_mean", {x})), {}, {4});
  check_value(t.run(t.op("reduce_mean", {x}, {{"axes", {1}}, {"keepdims", true}})), {3, 1}, {1.5, 3.5, 7});
}

TEST_CASE("interp reshape keeps row-major order and binds a leading -1 to the batch") {
  OpGraph t;
  std::vector<double> d(24);
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<double>(i);
  NodeId x = t.in("x", val({4, 2, 3}, d), {-1, 2, 3});
  Value flat = t.run(t.op("reshape", {x}, {{"shape", {-1, 6}}}));
  check_value(flat, {4, 6}, d);
  Value back = t.run(t.op("reshape", {t.op("reshape", {x}, {{"shape", {-1, 6}}})}, {{"shape", {-1, 3, 2}}}));
  check_value(back, {4, 3, 2}, d);
}

TEST_CASE("interp reshape of a static tensor to a scalar and back") {
  OpGraph t;
  NodeId x = t.in("x", val({1, 1}, {7}));
  check_value(t.run(t.op("reshape", {x}, {{"shape", Shape{}}})), {}, {7});
  check_value(t.run(t.op("reshape", {x}, {{"shape", {1}}})), {1}, {7});
}

TEST_CASE("interp transpose moves element i j k to the permuted position") {
  OpGraph t;
  NodeId m = t.in("m", val({2, 3}, {1, 2, 3, 4, 5, 6}));
  check_value(t.run(t.op("transpose", {m}, {{"perm", {1, 0}}})), {3, 2}, {1, 4, 2, 5, 3, 6});
  NodeId x = t.in("x", cube());
  Value p = t.run(t.op("transpose", {x}, {{"perm", {2, 0, 1}}}));
  REQUIRE(p.shape == Shape{3, 2, 2});
  // out[k][i][j] = x[i][j][k] = 100 i + 10 j + k
  for (int k = 0; k < 3; ++k)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) CHECK(p.data[static_cast<size_t>((k * 2 + i) * 2 + j)] == 100 * i + 10 * j + k);
}

TEST_CASE("interp broadcast repeats a row to the run-time batch") {
  OpGraph t;
  NodeId x = t.in("x", val({2, 3}, {0, 0, 0, 0, 0, 0}), {-1, 3});
  NodeId row = t.in("row", val({3}, {1, 2, 3}));
  NodeId b = t.op("broadcast", {row}, {{"shape", {-1, 3}}});
  check_value(t.run(t.op("add", {x, b})), {2, 3}, {1, 2, 3, 1, 2, 3});
  NodeId s = t.b.constant(4.0);
  check_value(t.run(t.op("broadcast", {s}, {{"shape", {2, 2}}})), {2, 2}, {4, 4, 4, 4});
}

TEST_CASE("interp dim_size gives the run-time batch for the open dimension - the static size otherwise") {
  OpGraph t;
  NodeId x = t.in("x", val({5, 3}, std::vector<double>(15, 1.0)), {-1, 3});
  Value batch = t.run(t.op("dim_size", {x}, {{"axis", 0}}));
  check_value(batch, {}, {5});
  Value cols = t.run(t.op("dim_size", {x}, {{"axis", -1}, {"dtype", "i32"}}));
  CHECK(cols.dtype == DType::i32);
  check_value(cols, {}, {3});
  OpGraph one;  // a batch of 1 is a batch too
  NodeId y = one.in("y", val({1, 3}, {1, 2, 3}), {-1, 3});
  check_value(one.run(one.op("dim_size", {y}, {{"axis", 0}})), {}, {1});
}

TEST_CASE("interp constant: a flat list with a shape - and a scalar") {
  OpGraph t;
  NodeId c = t.b.constant_tensor({1, 2, 3, 4, 5, 6}, {3, 2});
  check_value(t.run(c), {3, 2}, {1, 2, 3, 4, 5, 6});
  NodeId i = t.b.constant(-2.0, DType::i32);
  Value v = t.run(i);
  CHECK(v.dtype == DType::i32);
  check_value(v, {}, {-2});
}

TEST_CASE("interp matmul contracting over the open batch (a weight gradient x^T dy)") {
  OpGraph t;
  NodeId x = t.in("x", val({2, 3}, {1, 2, 3, 4, 5, 6}), {-1, 3});
  NodeId dy = t.in("dy", val({2, 2}, {1, 0, 0, 1}), {-1, 2});
  // x^T dy with dy = I: x^T itself
  check_value(t.run(t.op("matmul", {x, dy}, {{"transpose_a", true}})), {3, 2}, {1, 4, 2, 5, 3, 6});
}
