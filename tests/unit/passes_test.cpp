// The simplification passes on small known graphs: node counts before and
// after each pass, the rewrites they make, and that values do not change.
#include <doctest/doctest.h>

#include <sstream>

#include "compiler/autodiff/train_step.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/interp/interpreter.h"
#include "compiler/ir/builder.h"
#include "compiler/ops/registry.h"
#include "compiler/passes/pass_manager.h"
#include "compiler/passes/passes.h"

using namespace kiln;
using interp::Value;

namespace {

Value run_out(const Graph& g, const std::map<std::string, Value>& feeds) {
  return interp::Interpreter(g, interp::Precision::f64).run(feeds, {"out"}).at("out");
}

const Value kX{DType::f32, {2, 3}, {1, -2, 3, 0.5, 4, -1}};

}  // namespace

TEST_CASE("passes: cse merges equal nodes (and equal constants), keeping the first") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {2, 3}});
  NodeId s1 = b.add2("mul", x, b.constant(2.0));  // constant #1
  NodeId s2 = b.add2("mul", x, b.constant(2.0));  // constant #2, then an equal mul
  g.outputs = {{"out", b.add2("add", s1, s2)}};
  REQUIRE(g.nodes.size() == 6);
  Value before = run_out(g, {{"x", kX}});
  CHECK(eliminate_common_subexpressions(g));
  CHECK(g.nodes.size() == 4);  // x, 2, x*2, add
  CHECK(g.node(g.output("out")).inputs[0] == g.node(g.output("out")).inputs[1]);
  CHECK(run_out(g, {{"x", kX}}).data == before.data);
  CHECK_FALSE(eliminate_common_subexpressions(g));
}

TEST_CASE("passes: dce drops unused nodes but keeps inputs and params") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {2, 3}});
  b.input("unused_input", {DType::f32, {4}});
  NodeId w = b.param("w", {DType::f32, {3}});
  b.add1("exp", b.add2("mul", x, w));  // dead: 2 nodes
  g.outputs = {{"out", b.add2("add", x, w)}};
  REQUIRE(g.nodes.size() == 6);
  CHECK(eliminate_dead_code(g));
  CHECK(g.nodes.size() == 4);
  CHECK(g.find("unused_input") != kNoNode);
  CHECK(g.nodes_with_op("exp").empty());
  CHECK_FALSE(eliminate_dead_code(g));
}

TEST_CASE("passes: fold-constants evaluates constant subgraphs and static dim_size") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {2, 3}});
  NodeId six = b.add2("mul", b.constant(2.0), b.constant(3.0));
  NodeId v = b.add1("sqrt", b.constant_tensor({4, 9, 16}, {3}));
  NodeId n = b.add("dim_size", {x}, {{"axis", 1}});
  g.outputs = {{"out", b.add2("mul", b.add2("mul", x, v), b.add2("div", six, n))}};
  // x, 2, 3, mul, [4,9,16], sqrt, dim_size, x*v, div, out
  REQUIRE(g.nodes.size() == 10);
  CHECK(fold_constants(g));
  CHECK(g.nodes.size() == 10);  // folding rewrites in place; dce removes the orphans
  CHECK(g.node(six).op == "constant");
  CHECK(g.node(six).attrs.at("value").get<double>() == 6.0);
  CHECK(g.node(v).attrs.at("value").get<std::vector<double>>() == std::vector<double>{2, 3, 4});
  CHECK(g.node(n).attrs.at("value").get<double>() == 3.0);
  // Folding walks in order, so the div, whose inputs were folded just before, became 6 / 3 too.
  CHECK(g.node(g.node(g.output("out")).inputs[1]).attrs.at("value").get<double>() == 2.0);
  CHECK(eliminate_dead_code(g));
  CHECK(g.nodes.size() == 5);  // x, [2,3,4], x*v, 2, out
  Value out = run_out(g, {{"x", kX}});
  CHECK(out.data == std::vector<double>{1 * 2 * 2, -2 * 3 * 2, 3 * 4 * 2, 0.5 * 2 * 2, 4 * 3 * 2, -1 * 4 * 2});
}

TEST_CASE("passes: algebra removes neutral elements and double negations, keeps broadcasting ones") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {2, 3}});
  NodeId t = b.add2("mul", x, b.constant(1.0));              // x*1 -> x
  t = b.add2("add", b.constant(0.0), t);                     // 0+x -> x
  t = b.add2("sub", t, b.constant(0.0));                     // x-0 -> x
  t = b.add2("div", t, b.constant_tensor({1, 1, 1}, {3}));   // x/[1,1,1] -> x (same type)
  t = b.add1("neg", b.add1("neg", t));                       // neg(neg x) -> x
  NodeId widened = b.add2("mul", b.constant_tensor({1, 1}, {2, 1}), b.constant_tensor({5, 6, 7}, {3}));  // kept: broadcasts
  g.outputs = {{"out", b.add2("add", t, widened)}};
  REQUIRE(g.nodes.size() == 15);
  Value before = run_out(g, {{"x", kX}});
  CHECK(simplify_algebra(g));
  // mul, add, sub, div and the outer neg are gone (15 - 5); the inner neg is now dead, left to dce.
  CHECK(g.nodes.size() == 10);
  CHECK(g.node(g.output("out")).inputs[0] == g.find("x"));
  CHECK(g.nodes_with_op("mul").size() == 1);  // the broadcasting one stays
  CHECK(run_out(g, {{"x", kX}}).data == before.data);
  CHECK(eliminate_dead_code(g));
  CHECK(g.nodes.size() == 5);  // x, [1,1], [5,6,7], mul, add
}

TEST_CASE("passes: algebra composes transposes, folds them into matmul flags, merges reshapes") {
  Graph g;
  GraphBuilder b(g);
  NodeId a = b.input("a", {DType::f32, {3, 2}});
  NodeId w = b.input("w", {DType::f32, {4, 3}});
  NodeId at = b.add("transpose", {a}, {{"perm", {1, 0}}});                       // [2,3]
  NodeId back = b.add("transpose", {b.add("transpose", {at}, {{"perm", {1, 0}}})}, {{"perm", {1, 0}}});  // = at
  NodeId mm = b.add("matmul", {back, w}, {{"transpose_b", true}});               // a^T w^T: [2,4]
  NodeId r = b.add("reshape", {b.add("reshape", {mm}, {{"shape", {8}}})}, {{"shape", {4, 2}}});
  g.outputs = {{"out", r}};
  REQUIRE(g.nodes.size() == 8);
  std::map<std::string, Value> feeds = {{"a", {DType::f32, {3, 2}, {1, 2, 3, 4, 5, 6}}},
                                        {"w", {DType::f32, {4, 3}, {1, 0, 2, -1, 1, 0, 0, 3, 1, 2, 2, 2}}}};
  Value before = run_out(g, feeds);
  CHECK(simplify_algebra(g));
  CHECK(eliminate_dead_code(g));
  CHECK(g.nodes.size() == 4);  // a, w, matmul(a, w; ta, tb), reshape
  const Node& m = g.node(g.nodes_with_op("matmul").at(0));
  CHECK(m.attrs.at("transpose_a") == true);
  CHECK(m.attrs.at("transpose_b") == true);
  CHECK(m.inputs[0] == g.find("a"));
  CHECK(g.nodes_with_op("transpose").empty());
  CHECK(g.nodes_with_op("reshape").size() == 1);
  Value after = run_out(g, feeds);
  CHECK(after.shape == Shape{4, 2});
  CHECK(after.data == before.data);
  // a^T w^T by hand: a^T = [[1,3,5],[2,4,6]], w^T columns are w's rows.
  CHECK(after.data == std::vector<double>{11, 2, 14, 18, 14, 2, 18, 24});
}

TEST_CASE("passes: the simplify pipeline on the MLP training step, round by round") {
  Graph model = load_graph(KILN_SOURCE_DIR "/graphs/mlp_cifar10.json");
  Graph step = build_train_step(model);
  std::ostringstream dump;
  PipelineOptions options;
  options.dump = &dump;
  size_t before = step.nodes.size();
  auto runs = run_pipeline(step, "simplify", options);
  REQUIRE(runs.size() >= 7);
  CHECK(runs[0].pass == "fold-constants");
  CHECK(runs[1].pass == "sink-transposes");
  CHECK_FALSE(runs[1].changed);  // the MLP's transposes feed matmuls, no elementwise op
  CHECK(runs[2].pass == "algebra");
  CHECK(runs[3].pass == "factor-sums");
  CHECK(runs[4].pass == "fold-scales");
  CHECK_FALSE(runs[4].changed);  // no per-channel scale after the MLP's matmuls
  CHECK(runs[5].pass == "cse");
  CHECK(runs[6].pass == "dce");
  CHECK(runs[0].nodes_before == before);
  for (size_t i = 1; i < runs.size(); ++i) CHECK(runs[i].nodes_before == runs[i - 1].nodes_after);
  CHECK(step.nodes.size() < before);
  // The fixpoint's last round changed nothing; then recompute ran once (the
  // MLP has no per-example value within the budget read twice: relu feeds a matmul).
  REQUIRE(runs.size() >= 8);
  CHECK(runs.back().pass == "recompute");
  CHECK_FALSE(runs.back().changed);
  CHECK(runs[runs.size() - 2].pass == "dce");
  CHECK_FALSE(runs[runs.size() - 2].changed);  // it ran to a fixed point
  CHECK(dump.str().find("after cse (round 1)") != std::string::npos);
  CHECK(dump.str().find(std::to_string(before) + " -> ") != std::string::npos);
  // Every update survives, and the step still verifies.
  CHECK(step.updates.size() == 5);
  CHECK(verify(step).empty());
}

TEST_CASE("passes: recompute copies a cheap chain into each reader, back to the stored value, and the outputs stay") {
  // s = exp(x) (it reads an input: stored); a = s * 0.5 and c = a + 1 cost
  // one each, each read by two elementwise ops: exp(a), a * c, neg(c). Each of those gets its own
  // copy of the chain from s (a * c one copy of a, shared by its copy of c);
  // a and c go. d (read once) and `kept` (also read by a reduction) stay.
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {-1, 3}});
  NodeId s = b.add1("exp", x);
  NodeId a = b.add2("mul", s, b.constant(0.5));
  NodeId c = b.add2("add", a, b.constant(1.0));
  NodeId r1 = b.add1("exp", a), r2 = b.add2("mul", a, c), r3 = b.add1("neg", c);
  NodeId d = b.add2("mul", r3, b.constant(3.0));
  NodeId total = b.add1("reduce_sum", b.add2("add", r1, b.add2("add", r2, d)));
  NodeId kept = b.add2("mul", s, b.constant(2.0));
  g.outputs = {{"out", b.add2("add", total, b.add1("reduce_sum", kept))}, {"other", b.add1("neg", kept)}};
  const std::string a_name = g.node(a).name, c_name = g.node(c).name, d_name = g.node(d).name,
                    kept_name = g.node(kept).name;
  const std::map<std::string, Value> feeds{{"x", kX}};
  const Value before = run_out(g, feeds);
  CHECK(recompute_cheap_values(g));
  CHECK(verify(g).empty());
  CHECK(run_out(g, feeds).data == before.data);
  CHECK(g.find(a_name) == kNoNode);
  CHECK(g.find(c_name) == kNoNode);
  CHECK(g.find(d_name) != kNoNode);
  CHECK(g.find(kept_name) != kNoNode);
  int copies_of_a = 0, copies_of_c = 0;
  for (const Node& n : g.nodes) {
    copies_of_a += n.name.rfind(a_name + "/again", 0) == 0;
    copies_of_c += n.name.rfind(c_name + "/again", 0) == 0;
  }
  CHECK(copies_of_a == 3);  // exp(a)'s, a * c's, neg(c)'s (inside its copy of c)
  CHECK(copies_of_c == 2);  // a * c's, neg(c)'s
}

// A chain shaped like GELU's: -(s * k) is read by one op, its + 1, which two
// ops read. Copying the + 1 into both would leave -(s * k) stored and read
// back, so it (and s * k) count the readers their copied reader reaches: the
// whole chain is copied. A chain past the budget is stored where it crosses
// it (a run of negations one longer than the budget), and so is a value whose
// own op costs more (exp); what they read then has one reader and stays.
TEST_CASE("passes: recompute counts the readers a copied reader reaches, and stores a chain past its budget") {
  Graph g;
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {-1, 3}});
  NodeId s = b.add1("exp", x);  // reads an input: stored
  NodeId scaled = b.add2("mul", s, b.constant(0.7));
  NodeId negated = b.add1("neg", scaled);
  NodeId one_plus = b.add2("add", negated, b.constant(1.0));
  NodeId r1 = b.add2("mul", one_plus, s), r2 = b.add1("neg", one_plus);
  std::vector<NodeId> run = {s};
  for (int i = 0; i <= kRecomputeLaneOps; ++i) run.push_back(b.add1("neg", run.back()));
  const NodeId last = run.back(), before_last = run[run.size() - 2];
  NodeId q1 = b.add2("mul", last, s), q2 = b.add1("neg", last);
  NodeId e_input = b.add2("mul", s, b.constant(0.01));
  NodeId e = b.add1("exp", e_input);
  NodeId e1 = b.add2("mul", e, s), e2 = b.add1("neg", e);
  NodeId total = b.add2("add", b.add2("add", r1, r2), b.add2("add", b.add2("add", q1, q2), b.add2("add", e1, e2)));
  g.outputs = {{"out", b.add1("reduce_sum", total)}};
  const std::string negated_name = g.node(negated).name, scaled_name = g.node(scaled).name,
                    last_name = g.node(last).name, before_last_name = g.node(before_last).name, e_name = g.node(e).name,
                    e_input_name = g.node(e_input).name, one_plus_name = g.node(one_plus).name;
  REQUIRE(OpRegistry::get().find("neg")->lane_ops == 1);
  REQUIRE(OpRegistry::get().find("exp")->lane_ops > kRecomputeLaneOps);
  const std::map<std::string, Value> feeds{{"x", kX}};
  const Value before = run_out(g, feeds);
  CHECK(recompute_cheap_values(g));
  CHECK(verify(g).empty());
  CHECK(run_out(g, feeds).data == before.data);
  auto copies = [&](const std::string& name) {
    int n = 0;
    for (const Node& node : g.nodes) n += node.name.rfind(name + "/again", 0) == 0;
    return n;
  };
  CHECK(g.find(negated_name) == kNoNode);
  CHECK(copies(negated_name) == 2);  // one in each reader of its + 1
  CHECK(copies(scaled_name) == 2);
  CHECK(copies(one_plus_name) == 2);
  CHECK(g.find(last_name) != kNoNode);  // its chain costs one more than the budget: stored, read by both
  CHECK(copies(last_name) == 0);
  // Then the run before it has one reader each: left as it was, no copies.
  CHECK(g.find(before_last_name) != kNoNode);
  CHECK(copies(before_last_name) == 0);
  CHECK(g.find(e_name) != kNoNode);
  CHECK(copies(e_name) == 0);
  CHECK(copies(e_input_name) == 0);
}

// Batch norm's gradient from primitives, in small: sum(dy), and
// sum(-(dy * scale[c])) over the same axes beside an elementwise reader of
// dy * scale[c]. Factored, the second is -(sum(dy) * scale): cse merges the two
// sums of dy, and the product has one reader left. A factor that varies
// along a summed axis, or whose broadcast would change the sum's shape, stays.
TEST_CASE("passes: factor-sums takes per-channel factors and negations out of sums") {
  Graph g;
  GraphBuilder b(g);
  NodeId dy = b.input("dy", {DType::f32, {-1, 2, 3}});
  NodeId scale = b.input("scale", {DType::f32, {3}});
  NodeId rows = b.input("rows", {DType::f32, {2, 1}});
  const Attrs over_batch = {{"axes", {0, 1}}, {"keepdims", true}};
  NodeId sum_dy = b.add("reduce_sum", {dy}, over_batch);
  NodeId scaled = b.add2("mul", dy, scale);
  NodeId sum_neg = b.add("reduce_sum", {b.add1("neg", scaled)}, over_batch);
  NodeId by_rows = b.add("reduce_sum", {b.add2("mul", dy, rows)}, over_batch);  // rows vary along axis 1
  NodeId flat = b.add("reduce_sum", {b.add2("mul", dy, b.add("reshape", {scale}, {{"shape", {1, 1, 3}}}))},
                      {{"axes", {0, 1}}, {"keepdims", false}});  // [3] * [1,1,3] would be [1,1,3]
  // Summed axis 2 dropped: rows [2, 1] would meet axes 0 and 1 of the [2, 2]
  // sum instead of axes 1 and 2 of the [2, 2, 2] cube (the same shape, another product).
  NodeId cube = b.input("cube", {DType::f32, {2, 2, 2}});
  NodeId crossed = b.add("reduce_sum", {b.add2("mul", cube, rows)}, {{"axes", {2}}, {"keepdims", false}});
  // Summed axis 0 dropped, scale [3] wholly after it: factored.
  NodeId per_pixel = b.add("reduce_sum", {b.add2("mul", dy, scale)}, {{"axes", {0}}, {"keepdims", false}});
  g.outputs = {{"out", b.add2("add", b.add2("add", sum_dy, sum_neg), by_rows)},
               {"flat", flat},
               {"crossed", crossed},
               {"per_pixel", per_pixel},
               {"elementwise", b.add2("add", scaled, dy)}};
  const std::string by_rows_name = g.node(by_rows).name, flat_name = g.node(flat).name,
                    crossed_name = g.node(crossed).name;
  const Value dy_value{DType::f32, {2, 2, 3}, {1, -2, 3, 0.5, 4, -1, 2, 0.25, -3, 1.5, -0.5, 2}};
  const std::map<std::string, Value> feeds{
      {"dy", dy_value}, {"scale", Value{DType::f32, {3}, {0.5, -2, 3}}}, {"rows", Value{DType::f32, {2, 1}, {2, -1}}},
      {"cube", Value{DType::f32, {2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8}}}};
  auto run = [&](const std::string& out) {
    return interp::Interpreter(g, interp::Precision::f64).run(feeds, {out}).at(out);
  };
  const Value out_before = run("out"), flat_before = run("flat"), crossed_before = run("crossed"),
              per_pixel_before = run("per_pixel");
  run_pipeline(g, "simplify");
  CHECK(verify(g).empty());
  // Each sum over the batch reads dy itself or a product the factor varies in.
  int sums_of_dy = 0;
  for (const Node& n : g.nodes) {
    if (n.op != "reduce_sum") continue;
    const Node& term = g.node(n.inputs[0]);
    CHECK(term.op != "neg");
    sums_of_dy += n.inputs[0] == g.find("dy");
    if (term.op == "mul") CHECK((n.name == by_rows_name || n.name == flat_name || n.name == crossed_name));
  }
  // Over the batch and rows: sum(dy) and the factored sum(dy * scale), one
  // node; over the batch alone: per_pixel's, factored.
  CHECK(sums_of_dy == 2);
  CHECK(g.find(by_rows_name) != kNoNode);
  CHECK(g.find(flat_name) != kNoNode);
  const Value out_after = run("out"), flat_after = run("flat");
  REQUIRE(out_after.data.size() == out_before.data.size());
  for (size_t i = 0; i < out_before.data.size(); ++i) CHECK(out_after.data[i] == doctest::Approx(out_before.data[i]));
  CHECK(flat_after.data == flat_before.data);
  // crossed[s, t] = sum_k cube[s, t, k] * rows[t]: rows 2 and -1 by t.
  CHECK(run("crossed").data == std::vector<double>{(1 + 2) * 2.0, (3 + 4) * -1.0, (5 + 6) * 2.0, (7 + 8) * -1.0});
  CHECK(run("crossed").data == crossed_before.data);
  const Value per_pixel_after = run("per_pixel");
  REQUIRE(per_pixel_after.data.size() == per_pixel_before.data.size());
  for (size_t i = 0; i < per_pixel_before.data.size(); ++i)
    CHECK(per_pixel_after.data[i] == doctest::Approx(per_pixel_before.data[i]));
  // sum over the batch of -(dy * scale) for the first channel: -(1 + 0.5 + 2 + 1.5) * 0.5, plus sum(dy) and the rows' sum.
  CHECK(out_after.data[0] == doctest::Approx((1 + 0.5 + 2 + 1.5) - (1 + 0.5 + 2 + 1.5) * 0.5 + (2 * 1 - 0.5 + 2 * 2 - 1.5)));
}
