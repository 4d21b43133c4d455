// Every gradient rule against central finite differences in f64 (through
// kiln::gradcheck): each primitive and composite on seeded random shapes, every
// coordinate of every param checked.
#include <doctest/doctest.h>

#include <random>

#include "compiler/autodiff/gradcheck.h"
#include "compiler/ir/builder.h"

using namespace kiln;

namespace {

// A graph whose params feed the op under test; loss = sum(out * r) with r a
// random input, so the whole vector-Jacobian product is checked, not just a sum.
struct Case {
  Graph g;
  GraphBuilder b{g};
  uint64_t seed = 11;

  NodeId param(const std::string& name, Shape shape, double lo = -1, double hi = 1) {
    return b.param(name, {DType::f32, std::move(shape)},
                   {{"init", {{"kind", "uniform"}, {"min", lo}, {"max", hi}, {"seed", seed++}}}});
  }
  NodeId input(const std::string& name, Shape shape, DType dt = DType::f32) { return b.input(name, {dt, std::move(shape)}); }

  GradcheckReport check(NodeId out) {
    NodeId r = input("r", b.type(out).shape, b.type(out).dtype);
    NodeId loss = b.add("reduce_sum", {b.add2("mul", out, r)}, Attrs::object(), "loss");
    if (b.type(loss).dtype != DType::f32) loss = b.add("cast", {loss}, {{"dtype", "f32"}});
    g.outputs = {{"loss", loss}};
    verify_or_throw(g, "test graph");
    GradcheckOptions o;
    o.full_check_limit = 1 << 20;  // every coordinate
    o.batch = 3;
    o.max_redraws = 3;
    return gradcheck(g, o);
  }
};

void expect_pass(const GradcheckReport& r, const std::string& what) {
  INFO(what << "\n" << r.text());
  REQUIRE(!r.params.empty());
  for (const ParamCheck& p : r.params) {
    CHECK(p.autodiff_vs_fd < 1e-6);
    // Every coordinate is checked unless it sat on a kink (never more than a couple).
    CHECK(p.coordinates + p.skipped_kinks >= p.elements);
    CHECK(p.skipped_kinks <= 2);
  }
}

std::mt19937 shapes_rng(2024);
int64_t dim() { return std::uniform_int_distribution<int64_t>(1, 4)(shapes_rng); }

}  // namespace

TEST_CASE("autodiff rules: broadcasting binary ops match finite differences") {
  for (const char* op : {"add", "sub", "mul", "div", "maximum"}) {
    int64_t n = dim(), m = dim();
    std::vector<std::pair<Shape, Shape>> pairs = {{{n, m}, {n, m}}, {{n, m}, {m}}, {{n, 1}, {1, m}}, {{}, {n, m}}};
    for (auto& [sa, sb] : pairs) {
      Case c;
      bool divides = std::string(op) == "div";
      NodeId a = c.param("a", sa), bb = c.param("b", sb, divides ? 0.5 : -1, divides ? 1.5 : 1);
      expect_pass(c.check(c.b.add2(op, a, bb)), std::string(op) + " " + shape_str(sa) + " " + shape_str(sb));
    }
  }
}

TEST_CASE("autodiff rules: unary ops match finite differences") {
  for (const char* op : {"neg", "exp", "log", "sqrt", "square", "sigmoid"}) {
    Case c;
    bool positive = std::string(op) == "log" || std::string(op) == "sqrt";
    NodeId x = c.param("x", {dim(), dim()}, positive ? 0.5 : -2, 2);
    expect_pass(c.check(c.b.add1(op, x)), op);
  }
}

TEST_CASE("autodiff rules: select (both branches, not the condition) and float casts") {
  Case c;
  int64_t n = dim(), m = dim();
  NodeId cond = c.b.add("compare", {c.input("c", {-1, m}), c.b.constant(0.0)}, {{"kind", "gt"}});
  NodeId x = c.param("x", {m}), y = c.param("y", {1, m});
  expect_pass(c.check(c.b.add("select", {cond, x, y})), "select");
  (void)n;

  Case f;
  NodeId p = f.param("p", {dim(), dim()});
  NodeId wide = f.b.add("cast", {p}, {{"dtype", "f64"}});
  expect_pass(f.check(f.b.add("cast", {f.b.add2("mul", wide, wide)}, {{"dtype", "f32"}})), "cast f32 -> f64 -> f32");
}

TEST_CASE("autodiff rules: matmul in all four transpose variants, as flagged matmuls") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      Case c;
      int64_t m = dim(), k = dim(), n = dim();
      NodeId a = c.param("a", ta ? Shape{k, m} : Shape{m, k});
      NodeId b = c.param("b", tb ? Shape{n, k} : Shape{k, n});
      expect_pass(c.check(c.b.add("matmul", {a, b}, {{"transpose_a", ta}, {"transpose_b", tb}})),
                  "matmul ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
      // The backward pass is matmuls with flags, never an explicit transpose.
      CHECK(c.g.nodes_with_op("transpose").empty());
    }
  // An open batch dimension on the left operand (a dense layer's input).
  Case c;
  NodeId x = c.input("x", {-1, 3});
  NodeId w = c.param("w", {3, 2});
  expect_pass(c.check(c.b.add2("matmul", c.b.add2("mul", x, c.param("s", {3})), w)), "matmul with open batch");
}

TEST_CASE("autodiff rules: reduce_sum and reduce_max over axis sets, with and without keepdims") {
  std::vector<std::vector<int64_t>> axis_sets = {{}, {0}, {1}, {2}, {0, 2}, {-1}};
  for (const char* op : {"reduce_sum", "reduce_max"})
    for (auto& axes : axis_sets)
      for (bool keep : {false, true}) {
        Case c;
        NodeId x = c.param("x", {dim(), dim() + 1, dim() + 1});
        expect_pass(c.check(c.b.add(op, {x}, {{"axes", axes}, {"keepdims", keep}})),
                    std::string(op) + " axes " + nlohmann::json(axes).dump() + " keepdims " + std::to_string(keep));
      }
}

TEST_CASE("autodiff rules: reshape, transpose, broadcast") {
  int64_t n = dim(), m = dim(), k = dim();
  {
    Case c;
    expect_pass(c.check(c.b.add("reshape", {c.param("x", {n, m, k})}, {{"shape", Shape{n * m, k}}})), "reshape");
  }
  {
    Case c;
    expect_pass(c.check(c.b.add("transpose", {c.param("x", {n, m, k})}, {{"perm", {2, 0, 1}}})), "transpose");
  }
  for (Shape from : {Shape{m}, Shape{n, 1}, Shape{1, m}, Shape{}}) {
    Case c;
    expect_pass(c.check(c.b.add("broadcast", {c.param("x", from)}, {{"shape", Shape{n, m}}})), "broadcast " + shape_str(from));
  }
  {
    Case c;  // broadcast to the open batch dimension
    NodeId x = c.input("x", {-1, m});
    expect_pass(c.check(c.b.add2("mul", x, c.b.add("broadcast", {c.param("p", {m})}, {{"shape", Shape{-1, m}}}))),
                "broadcast to the open batch");
  }
}

TEST_CASE("autodiff rules: conv2d (valid, same, strides) and maxpool2d") {
  struct Conv { Shape x, w; std::vector<int64_t> strides; const char* padding; };
  for (const Conv& cv : {Conv{{2, 5, 6, 3}, {3, 2, 3, 4}, {1, 1}, "valid"}, Conv{{1, 5, 5, 2}, {3, 3, 2, 3}, {2, 2}, "same"},
                         Conv{{2, 6, 4, 1}, {2, 3, 1, 2}, {2, 1}, "same"}}) {
    Case c;
    NodeId x = c.param("x", cv.x), w = c.param("w", cv.w);
    expect_pass(c.check(c.b.add("conv2d", {x, w}, {{"strides", cv.strides}, {"padding", cv.padding}})),
                std::string("conv2d ") + cv.padding);
  }
  struct Pool { Shape x; std::vector<int64_t> pool, strides; const char* padding; };
  for (const Pool& pl : {Pool{{2, 4, 6, 3}, {2, 2}, {2, 2}, "valid"}, Pool{{1, 5, 5, 2}, {3, 3}, {2, 2}, "same"},
                         Pool{{1, 5, 4, 2}, {2, 2}, {1, 1}, "valid"}}) {
    Case c;
    NodeId x = c.param("x", pl.x);
    expect_pass(c.check(c.b.add("maxpool2d", {x}, {{"pool", pl.pool}, {"strides", pl.strides}, {"padding", pl.padding}})),
                std::string("maxpool2d ") + pl.padding);
  }
}

TEST_CASE("autodiff rules: composites (relu, softmax, log_softmax, dense, losses, l2, reduce_mean)") {
  int64_t n = dim(), m = dim() + 1;
  {
    Case c;
    expect_pass(c.check(c.b.add1("relu", c.param("x", {n, m}))), "relu");
  }
  for (int64_t axis : {-1, 0}) {
    Case c;
    expect_pass(c.check(c.b.add("softmax", {c.param("x", {n, m}, -3, 3)}, {{"axis", axis}})), "softmax");
    Case d;
    expect_pass(d.check(d.b.add("log_softmax", {d.param("x", {n, m}, -3, 3)}, {{"axis", axis}})), "log_softmax");
  }
  {
    Case c;
    NodeId x = c.input("x", {-1, 3});
    expect_pass(c.check(c.b.add("dense", {x, c.param("w", {3, m}), c.param("b", {m})})), "dense");
  }
  {
    Case c;
    NodeId pred = c.b.add("dense", {c.input("x", {-1, 3}), c.param("w", {3, m}), c.param("b", {m})});
    expect_pass(c.check(c.b.add("mse", {pred, c.input("t", {-1, m})})), "mse");
  }
  {
    Case c;
    NodeId logits = c.b.add("dense", {c.input("x", {-1, 3}), c.param("w", {3, m}), c.param("b", {m})});
    expect_pass(c.check(c.b.add("sparse_softmax_cross_entropy", {logits, c.input("labels", {-1}, DType::i32)})),
                "sparse_softmax_cross_entropy");
  }
  {
    Case c;
    NodeId logits = c.b.add("dense", {c.input("x", {-1, 3}), c.param("w", {3, 1}), c.param("b", {1})});
    expect_pass(c.check(c.b.add("binary_cross_entropy", {logits, c.input("z", {-1, 1})})), "binary_cross_entropy");
  }
  {
    Case c;
    expect_pass(c.check(c.b.add("l2_penalty", {c.param("w1", {n, m}), c.param("w2", {m})}, {{"reg", 0.3}})), "l2_penalty");
  }
  {
    Case c;
    NodeId x = c.b.add2("mul", c.input("x", {-1, m}), c.param("p", {m}));
    expect_pass(c.check(c.b.add("reduce_mean", {x}, {{"axes", {0}}})), "reduce_mean over the open batch");
  }
}
