// Data-movement ops on hand-computed values (the registry sweep checks them
// against the interpreter on random draws; here both are checked against
// numbers written out): ONNX slice rules, pad modes, gather's negative and
// out-of-range indices, scatter_add's repeated indices, tile, flip, range,
// and the located errors of bad attributes.
#include <doctest/doctest.h>

#include "codegen_helpers.h"

using namespace kiln;
using codegen_test::JitCase;

namespace {

NodeId iota_input(JitCase& t, const std::string& name, Shape shape, DType dt = DType::f32) {
  NodeId x = t.input(name, shape, 0, 1, dt);
  for (size_t i = 0; i < t.feeds[name].data.size(); ++i) t.feeds[name].data[i] = static_cast<double>(i);
  return x;
}

}  // namespace

TEST_CASE("movement ops: slice, pad, concat, tile, flip on values written out (JIT and interpreter)") {
  JitCase t(1, 1);
  NodeId x = iota_input(t, "x", {2, 5});  // [[0 1 2 3 4] [5 6 7 8 9]]
  t.out("slice", t.op("slice", {x}, {{"starts", {-1, 4}}, {"ends", {-100, -100}}, {"steps", {-1, -2}}}));
  t.out("reflect", t.op("pad", {x}, {{"pads", {0, 2, 0, 1}}, {"mode", "reflect"}}));
  t.out("edge", t.op("pad", {x}, {{"pads", {1, 0, 0, 1}}, {"mode", "edge"}}));
  t.out("constant", t.op("pad", {x}, {{"pads", {0, 1, 0, 0}}, {"value", -1.0}}));
  t.out("concat", t.op("concat", {x, x}, {{"axis", 1}}));
  t.out("tile", t.op("tile", {t.op("slice", {x}, {{"starts", {0}}, {"ends", {2}}, {"axes", {1}}})}, {{"repeats", {1, 2}}}));
  t.out("flip", t.op("flip", {x}, {{"axes", {1}}}));
  t.out("range", t.op("range", {}, {{"start", 1}, {"limit", -1}, {"delta", -0.5}}));
  auto got = t.check(0);
  CHECK(got.at("slice").data == std::vector<double>{9, 7, 5, 4, 2, 0});
  CHECK(got.at("reflect").data == std::vector<double>{2, 1, 0, 1, 2, 3, 4, 3, 7, 6, 5, 6, 7, 8, 9, 8});
  CHECK(got.at("edge").data == std::vector<double>{0, 1, 2, 3, 4, 4, 0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9, 9});
  CHECK(got.at("constant").data == std::vector<double>{-1, 0, 1, 2, 3, 4, -1, 5, 6, 7, 8, 9});
  CHECK(got.at("concat").data == std::vector<double>{0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 5, 6, 7, 8, 9});
  CHECK(got.at("tile").data == std::vector<double>{0, 1, 0, 1, 5, 6, 5, 6});
  CHECK(got.at("flip").data == std::vector<double>{4, 3, 2, 1, 0, 9, 8, 7, 6, 5});
  CHECK(got.at("range").data == std::vector<double>{1, 0.5, 0, -0.5});
}

TEST_CASE("movement ops: gather wraps negative indices and reads zeros outside, scatter_add adds repeats") {
  JitCase t(4, 4);
  NodeId table = iota_input(t, "table", {5, 2});  // rows [0 1] [2 3] [4 5] [6 7] [8 9]
  NodeId ids = t.input("ids", {-1}, 0, 1, DType::i32);
  t.feeds["ids"].data = {1, -1, 7, 1};
  t.out("rows", t.op("gather", {table, ids}));
  NodeId updates = t.input("updates", {-1, 2});
  t.feeds["updates"].data = {1, 2, 10, 20, 100, 200, 1000, 2000};
  t.out("scattered", t.op("scatter_add", {table, ids, updates}));
  auto got = t.check(0);
  CHECK(got.at("rows").data == std::vector<double>{2, 3, 8, 9, 0, 0, 2, 3});
  // row 1 gets updates 0 and 3, row 4 (= -1) gets update 1, index 7 is dropped.
  CHECK(got.at("scattered").data == std::vector<double>{0, 1, 1003, 2005, 4, 5, 6, 7, 18, 29});
}

TEST_CASE("movement ops: bad attributes are refused with the attribute and value named") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {-1, 5}});
  CHECK_THROWS_WITH_AS(b.add("pad", {x}, {{"pads", {0, 1}}}), doctest::Contains("'pads' [0,1]: needs 2 x rank = 4"),
                       std::exception);
  CHECK_THROWS_WITH_AS(b.add("pad", {x}, {{"pads", {0, 0, 0, 5}}, {"mode", "reflect"}}),
                       doctest::Contains("must be smaller than its size 5"), std::exception);
  CHECK_THROWS_WITH_AS(b.add("slice", {x}, {{"starts", {0}}, {"ends", {2}}}),
                       doctest::Contains("cannot slice along the open batch dimension"), std::exception);
  CHECK_THROWS_WITH_AS(b.add("slice", {x}, {{"starts", {0}}, {"ends", {2}}, {"axes", {1}}, {"steps", {0}}}),
                       doctest::Contains("step is 0"), std::exception);
  CHECK_THROWS_WITH_AS(b.add("concat", {x, b.input("y", {DType::f32, {-1, 4, 1}})}, {{"axis", 1}}),
                       doctest::Contains("does not match"), std::exception);
  CHECK_THROWS_WITH_AS(b.add("gather", {x, b.input("f", {DType::f32, {3}})}, {{"axis", 1}}),
                       doctest::Contains("indices must be i32 or i64"), std::exception);
  CHECK_THROWS_WITH_AS(b.add("squeeze", {x}, {{"axes", {1}}}), doctest::Contains("axis 1 has size 5, not 1"),
                       std::exception);
}

TEST_CASE("movement ops: gather_elements (the ONNX example) and its gradient scatter_elements_add") {
  JitCase t(2, 2);
  NodeId data = t.input("data", {-1, 2});
  t.feeds["data"].data = {1, 2, 3, 4};
  NodeId idx = t.input("idx", {-1, 2}, 0, 1, DType::i64);
  t.feeds["idx"].data = {0, 0, 1, -2};  // -2 wraps to 0
  t.out("gathered", t.op("gather_elements", {data, idx}, {{"axis", 1}}));
  t.out("scattered", t.op("scatter_elements_add", {data, idx, data}, {{"axis", 1}}));
  auto got = t.check(0);
  CHECK(got.at("gathered").data == std::vector<double>{1, 1, 4, 3});
  CHECK(got.at("scattered").data == std::vector<double>{1 + 1 + 2, 2, 3 + 4, 4 + 3});
}
