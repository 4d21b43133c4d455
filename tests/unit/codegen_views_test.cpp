// Views (issue 21): a reshape, a squeeze/unsqueeze and a contiguous slice are
// their input's bytes, so no kernel computes them; readers load the input's
// buffer at an offset. Each case checks the program's shape (which nodes got
// kernels, which buffers are views) and the JIT's values against the
// interpreter.
#include <doctest/doctest.h>

#include <algorithm>

#include "compiler/lower/lower_program.h"
#include "compiler/ops/registry.h"
#include "tests/unit/codegen_helpers.h"

using namespace kiln;
using codegen_test::JitCase;

namespace {

lower::Program lowered(JitCase& c, std::vector<std::string>* why = nullptr,
                       std::vector<std::pair<NodeId, NodeId>> updates = {}) {
  std::vector<std::string> names;
  for (auto& [n, id] : c.g.outputs) names.push_back(n);
  return lower::lower_program(c.g.name, {{"eval_step", &c.g, names, std::move(updates)}},
                              {.max_batch = c.max_batch, .why = why});
}

bool has_kernel_for(const lower::Program& p, const std::string& node) {
  return std::any_of(p.kernels.begin(), p.kernels.end(), [&](const lower::Kernel& k) { return k.node == node; });
}

const lower::Buffer* buffer_named(const lower::Program& p, const std::string& name) {
  for (const lower::Buffer& b : p.buffers)
    if (b.name == name) return &b;
  return nullptr;
}

}  // namespace

TEST_CASE("views: reshape, squeeze and unsqueeze run no kernel, readers load the input's bytes") {
  JitCase c(5, 8);
  NodeId x = c.input("x", {kOpenDim, 6, 4});
  NodeId e = c.op("exp", {x});  // the view's base is an arena buffer
  NodeId r = c.b.add("reshape", {e}, {{"shape", Shape{kOpenDim, 24}}}, "r");
  NodeId u = c.b.add("unsqueeze", {r}, {{"axes", {1}}}, "u");
  NodeId s = c.b.add("squeeze", {u}, {{"axes", {1}}}, "s");
  c.out("y", c.op("mul", {s, c.op("reshape", {x}, {{"shape", Shape{kOpenDim, 24}}})}));
  c.out("r", r);  // a view returned by the entry is copied out like any value
  lower::Program p = lowered(c);
  for (const char* view : {"r", "u", "s"}) {
    INFO(view);
    CHECK_FALSE(has_kernel_for(p, view));
    const lower::Buffer* b = buffer_named(p, view);
    REQUIRE(b);
    CHECK(b->is_view());
    CHECK(b->view_offset == 0);
    CHECK_FALSE(p.buffers[static_cast<size_t>(b->view_of)].is_view());  // views of views point at the base
  }
  c.check();
}

TEST_CASE("views: a contiguous slice is its input from an offset on, a strided one is a copy") {
  JitCase c(3, 4);
  NodeId x = c.input("x", {kOpenDim, 8});
  NodeId w = c.param("w", {5, 8});
  // Rows 2 and 3 of w: elements 16..31.
  NodeId rows = c.b.add("slice", {w}, {{"starts", {2}}, {"ends", {4}}, {"axes", {0}}}, "rows");
  c.out("y", c.op("matmul", {x, rows}, {{"transpose_b", true}}));
  // t[1, 2:4, :] of a [3, 4, 5] tensor: one index, a range, then everything: offset 1*20 + 2*5.
  NodeId t = c.op("tanh", {c.input("t", {3, 4, 5})});
  NodeId block = c.b.add("slice", {t}, {{"starts", {1, 2}}, {"ends", {2, 4}}, {"axes", {0, 1}}}, "block");
  c.out("block", c.op("add", {block, c.op("constant", {}, {{"value", 1.0}, {"shape", Shape{1, 2, 5}}})}));
  // Every other column: strided, a copy kernel.
  NodeId cols = c.b.add("slice", {x}, {{"starts", {0}}, {"ends", {8}}, {"axes", {1}}, {"steps", {2}}}, "cols");
  c.out("cols", c.op("neg", {cols}));
  lower::Program p = lowered(c);
  const lower::Buffer* rb = buffer_named(p, "rows");
  const lower::Buffer* bb = buffer_named(p, "block");
  REQUIRE(rb);
  REQUIRE(bb);
  CHECK(rb->is_view());
  CHECK(rb->view_offset == 16);
  CHECK(rb->storage == lower::Storage::Param);
  CHECK(bb->is_view());
  CHECK(bb->view_offset == 30);
  CHECK_FALSE(has_kernel_for(p, "rows"));
  CHECK_FALSE(has_kernel_for(p, "block"));
  CHECK(has_kernel_for(p, "cols"));
  CHECK_FALSE(buffer_named(p, "cols")->is_view());
  c.check();
}

TEST_CASE("views: the contiguous-slice rule, axis by axis") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {3, 4, 5}});
  auto offset = [&](Attrs a) { return view_offset(g, b.add("slice", {x}, std::move(a))); };
  CHECK(offset({{"starts", {0}}, {"ends", {3}}}) == 0);                                         // everything
  CHECK(offset({{"starts", {2}}, {"ends", {3}}}) == 40);                                        // the last block
  CHECK(offset({{"starts", {1, 1, 2}}, {"ends", {2, 2, 4}}}) == 20 + 5 + 2);                    // one row's run
  CHECK(offset({{"starts", {2, 3}}, {"ends", {0, 4}}, {"steps", {-1, 1}}}) == std::nullopt);    // two blocks, reversed
  CHECK(offset({{"starts", {0}}, {"ends", {2}}, {"axes", {2}}}) == std::nullopt);               // a column range
  CHECK(offset({{"starts", {1, 0}}, {"ends", {2, 3}}, {"axes", {0, 1}}}) == 20);                // rows 0-2 of block 1
}

TEST_CASE("views: a param updated in place is not overwritten while a view of it is still to be read") {
  JitCase c(2, 2);
  NodeId p = c.param("p", {4, 6});
  NodeId v = c.op("mul", {p, c.op("constant", {}, {{"value", 0.5}, {"shape", Shape{}}})});  // p's new value
  NodeId flat = c.b.add("reshape", {p}, {{"shape", Shape{24}}}, "flat");
  c.out("old_plus_one", c.b.add("add", {flat, c.op("constant", {}, {{"value", 1.0}, {"shape", Shape{}}})}, {}, "o"));
  std::vector<std::string> why;
  lower::Program prog = lowered(c, &why, {{p, v}});
  bool copied = std::any_of(why.begin(), why.end(), [](const std::string& s) {
    return s.find("copy after the step: %p") != std::string::npos && s.find("%o reads the old value") != std::string::npos;
  });
  CHECK(copied);
}

TEST_CASE("views: a GEMM's product read through a reshape still takes its consumer as epilogue") {
  JitCase c(4, 8);
  NodeId x = c.input("x", {kOpenDim, 6, 8});
  NodeId w = c.param("w", {8, 12});
  NodeId y = c.op("matmul", {x, w});                                       // [?, 6, 12]
  NodeId flat = c.b.add("reshape", {y}, {{"shape", Shape{kOpenDim, 72}}}, "flat");
  c.out("z", c.op("relu", {flat}));
  std::vector<std::string> why;
  lower::Program p = lowered(c, &why);
  CHECK(std::any_of(why.begin(), why.end(), [](const std::string& s) { return s.find("epilogue: ") == 0 ||
                                                                              s.find(": epilogue: ") != std::string::npos; }));
  CHECK_FALSE(has_kernel_for(p, "flat"));
  c.check();
}

TEST_CASE("concat in place: each part's elementwise producer is computed inside the concat's loop, never stored") {
  JitCase c(3, 4);
  NodeId x = c.input("x", {kOpenDim, 5});
  NodeId y = c.input("y", {kOpenDim, 7});
  NodeId a = c.b.add("relu", {c.op("add", {x, c.op("constant", {}, {{"value", 0.25}, {"shape", Shape{}}})})}, {}, "a");
  NodeId t = c.b.add("tanh", {y}, {}, "t");
  NodeId shared = c.b.add("exp", {x}, {}, "shared");  // also read by the second output: stored
  c.out("cat", c.b.add("concat", {a, t, shared, a}, {{"axis", 1}}, "cat"));
  c.out("shared_sum", c.op("reduce_sum", {shared}, {{"axes", {1}}}));
  std::vector<std::string> why;
  lower::Program p = lowered(c, &why);
  CHECK_FALSE(has_kernel_for(p, "a"));
  CHECK_FALSE(has_kernel_for(p, "t"));
  CHECK(buffer_named(p, "a") == nullptr);  // never stored
  CHECK(buffer_named(p, "t") == nullptr);
  CHECK(buffer_named(p, "shared") != nullptr);
  auto said = [&](const std::string& phrase) {
    return std::any_of(why.begin(), why.end(), [&](const std::string& s) { return s.find(phrase) != std::string::npos; });
  };
  CHECK(said("computed inline: %t computed inside %cat (concat)"));
  CHECK(said("not computed inline: %shared -> %cat (concat): %shared is also read by"));
  c.check();
}
