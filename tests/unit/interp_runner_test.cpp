// The interpreter as a whole: feeds checked against declared types (errors
// name the node), the open batch, fetching by output or node name, and only
// computing what the fetch needs.
#include "tests/unit/interp_helpers.h"

using namespace kiln;
using namespace kiln::interp_test;

namespace {

// x: f32[?,3], labels: i32[?]; outputs "sum" (needs only x) and "picked" (needs both).
struct TwoInputGraph {
  Graph g;
  TwoInputGraph() {
    GraphBuilder b(g);
    g.name = "two_inputs";
    NodeId x = b.input("x", {DType::f32, {-1, 3}});
    NodeId y = b.input("labels", {DType::i32, {-1}});
    NodeId w = b.param("w", {DType::f32, {3}}, {{"init", {{"kind", "ones"}, {"seed", 0}}}});
    NodeId s = b.add("reduce_sum", {b.add2("mul", x, w)}, {{"axes", {1}}}, "row_sum");
    NodeId oh = b.add("one_hot", {y}, {{"depth", 3}});
    NodeId picked = b.add("reduce_sum", {b.add2("mul", oh, x)}, {{"axes", {1}}});
    g.outputs = {{"sum", s}, {"picked", picked}};
  }
};

std::string error_of(const Graph& g, const std::map<std::string, Value>& feeds, std::vector<std::string> fetch = {}) {
  try {
    interp::Interpreter(g).run(feeds, fetch);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("interp runner: a wrong static dimension names the input - both types and the dimension") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {-1, 3072}});
  g.outputs = {{"y", b.add1("neg", x)}};
  Value bad = val({64, 3071}, std::vector<double>(64 * 3071, 0.0));
  CHECK(error_of(g, {{"x", bad}}) == "input 'x': expected f32[?,3072], got f32[64,3071] (dimension 1)");
}

TEST_CASE("interp runner: wrong rank - wrong dtype class - non-integer labels - short data") {
  TwoInputGraph t;
  Value w = val({3}, {1, 1, 1});
  Value x = val({2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(error_of(t.g, {{"x", val({6}, x.data)}, {"w", w}}, {"sum"}) ==
        "input 'x': expected f32[?,3], got f32[6] (rank 1, expected 2)");
  CHECK(error_of(t.g, {{"x", x}, {"w", w}, {"labels", val({2}, {0, 1})}}) ==
        "input 'labels': expected i32[?], got f32[2] (float values, expected integer)");
  CHECK(error_of(t.g, {{"x", x}, {"w", w}, {"labels", val({2}, {0, 1.5}, DType::i32)}}) ==
        "input 'labels': value 1.5 is not a valid i32");
  CHECK(error_of(t.g, {{"x", val({2, 3}, {1, 2})}, {"w", w}}, {"sum"}) ==
        "input 'x': the value holds 2 numbers but its shape [2,3] needs 6");
  CHECK(error_of(t.g, {{"x", x}, {"w", val({4}, {1, 1, 1, 1})}}, {"sum"}) ==
        "param 'w': expected f32[3], got f32[4] (dimension 0)");
}

TEST_CASE("interp runner: every fed input must agree on the batch size") {
  TwoInputGraph t;
  std::string e = error_of(t.g, {{"x", val({2, 3}, {1, 2, 3, 4, 5, 6})},
                                 {"w", val({3}, {1, 1, 1})},
                                 {"labels", val({3}, {0, 1, 2}, DType::i32)}});
  CHECK(e == "input 'labels': expected i32[?], got i32[3] (batch dimension 3, but 'x' was fed a batch of 2)");
}

TEST_CASE("interp runner: missing feeds - unknown feeds and unknown fetch names are errors that name them") {
  TwoInputGraph t;
  Value x = val({2, 3}, {1, 2, 3, 4, 5, 6}), w = val({3}, {1, 1, 1});
  CHECK(error_of(t.g, {{"x", x}, {"w", w}}) == "input 'labels' (i32[?]) is needed but was not fed");
  CHECK(error_of(t.g, {{"x", x}}, {"sum"}).find("param 'w' (f32[3]) is needed but was not fed") == 0);
  CHECK(error_of(t.g, {{"x", x}, {"w", w}, {"z", x}}, {"sum"}) == "feed 'z' is not an input or param of graph 'two_inputs'");
  CHECK(error_of(t.g, {{"x", x}, {"w", w}}, {"summ"}) ==
        "graph 'two_inputs' has no output or node named 'summ' (did you mean 'sum'?)");
}

TEST_CASE("interp runner: only what the fetch needs is computed - by output or node name") {
  TwoInputGraph t;
  std::map<std::string, Value> feeds = {{"x", val({2, 3}, {1, 2, 3, 4, 5, 6})}, {"w", val({3}, {1, 1, 1})}};
  auto out = interp::Interpreter(t.g).run(feeds, {"sum", "row_sum"});  // labels not needed
  check_value(out.at("sum"), {2}, {6, 15});
  check_value(out.at("row_sum"), {2}, {6, 15});
  feeds["labels"] = val({2}, {2, 0}, DType::i32);
  auto all = interp::Interpreter(t.g).run(feeds);
  REQUIRE(all.size() == 2);
  check_value(all.at("picked"), {2}, {3, 4});
  CHECK(interp::inputs_needed(t.g, {"sum"}) == std::vector<std::string>{"x"});
  CHECK(interp::inputs_needed(t.g, {}) == std::vector<std::string>{"x", "labels"});
}

TEST_CASE("interp runner: the same graph runs any batch size - including a batch of 1") {
  TwoInputGraph t;
  for (int64_t n : {1, 5}) {
    std::vector<double> d(static_cast<size_t>(n * 3), 2.0);
    auto out = interp::Interpreter(t.g).run({{"x", val({n, 3}, d)}, {"w", val({3}, {1, 1, 1})}}, {"sum"});
    check_value(out.at("sum"), {n}, std::vector<double>(static_cast<size_t>(n), 6.0));
  }
}

TEST_CASE("interp runner: fed f32 values are rounded to float in f32 mode") {
  TwoInputGraph t;
  double third = 1.0 / 3.0;
  std::map<std::string, Value> feeds = {{"x", val({1, 3}, {third, 0, 0})}, {"w", val({3}, {1, 1, 1})}};
  auto f32 = interp::Interpreter(t.g, Precision::f32).run(feeds, {"x"});
  auto f64 = interp::Interpreter(t.g, Precision::f64).run(feeds, {"x"});
  CHECK(f32.at("x").data[0] == static_cast<double>(static_cast<float>(third)));
  CHECK(f64.at("x").data[0] == third);
}

TEST_CASE("interp runner: an open shape with no open input fed is an error naming the node") {
  Graph g;
  GraphBuilder b(g);
  b.input("x", {DType::f32, {-1, 3}});
  NodeId row = b.input("row", {DType::f32, {3}});
  g.outputs = {{"wide", b.add("broadcast", {row}, {{"shape", {-1, 3}}}, "wide")}};
  std::string e = error_of(g, {{"row", val({3}, {1, 2, 3})}});
  CHECK(e == "node 'wide' (broadcast): the open batch dimension is unbound: no input with an open dimension was fed");
}

TEST_CASE("interp runner: intermediates are freed but fetched values survive") {
  TwoInputGraph t;
  std::map<std::string, Value> feeds = {{"x", val({1, 3}, {1, 2, 3})}, {"w", val({3}, {2, 2, 2})}};
  // "x" feeds the mul and is fetched too: it must still hold its value at the end.
  auto out = interp::Interpreter(t.g).run(feeds, {"x", "sum"});
  check_value(out.at("x"), {1, 3}, {1, 2, 3});
  check_value(out.at("sum"), {1}, {12});
}
