// Every malformed graph under tests/fixtures/bad_graphs/ is refused with
// located diagnostics: the JSON path, the node, and a message that says what is
// wrong. Each fixture holds exactly the problems listed here (no cascades).
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

#include "test_util.h"
#include "compiler/frontend/graph_json.h"

namespace {

const std::string kFixtures = std::string(KILN_SOURCE_DIR) + "/tests/fixtures/bad_graphs/";

struct Expected {
  std::string path;
  std::string node;
  std::string phrase;  // a part of the message the user acts on
};

std::vector<kiln::Diagnostic> diagnostics_of(const std::string& fixture) {
  try {
    kiln::load_graph(kFixtures + fixture);
  } catch (const kiln::GraphError& e) {
    return e.diagnostics;
  }
  FAIL(fixture << " loaded without error");
  return {};
}

void expect_diagnostics(const std::string& fixture, const std::vector<Expected>& expected) {
  auto got = diagnostics_of(fixture);
  INFO("fixture " << fixture);
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("diagnostic " << i << ": " << got[i].path << " (" << got[i].node << "): " << got[i].message);
    CHECK(got[i].path == expected[i].path);
    CHECK(got[i].node == expected[i].node);
    CHECK(got[i].message.find(expected[i].phrase) != std::string::npos);
  }
}

using kiln::test::run_kiln;

}  // namespace

TEST_CASE("frontend errors: text that is not JSON is located by line and column") {
  // The comma missing after line 4 is noticed at the string "outputs" that starts line 5, column 3.
  expect_diagnostics("not_json.json", {{"", "", "not valid JSON: line 5, column 3"}});
}

TEST_CASE("frontend errors: file-level problems") {
  expect_diagnostics("missing_format.json", {{"/format", "", "missing \"format\": write \"format\": \"kiln.graph/1\""}});
  expect_diagnostics("unknown_format_version.json",
                     {{"/format", "", "unknown format version \"kiln.graph/2\"; this kiln reads \"kiln.graph/1\""}});
  expect_diagnostics("unknown_top_level_key.json", {{"/seeds", "", "unknown top-level key 'seeds' (did you mean 'seed'?)"}});
}

TEST_CASE("frontend errors: unknown names come with the closest known name") {
  expect_diagnostics("unknown_op.json", {{"/nodes/0/op", "h", "unknown op 'matmull' (did you mean 'matmul'?)"}});
  expect_diagnostics("unknown_layer.json", {{"/nodes/0/layer", "hidden", "unknown layer 'dence' (did you mean 'dense'?)"}});
  expect_diagnostics("op_is_layer.json",
                     {{"/nodes/0/op", "flat", "'flatten' is a layer, not an op: write \"layer\": \"flatten\""}});
  expect_diagnostics("unknown_input.json", {{"/nodes/0/inputs/1", "h", "unknown input 'w11' (did you mean 'w1'?)"}});
  expect_diagnostics("output_unknown_node.json",
                     {{"/outputs/logits", "", "output 'logits' names unknown node 'logit' (did you mean 'logits'?)"}});
}

TEST_CASE("frontend errors: names, structure and cycles") {
  expect_diagnostics("duplicate_names.json", {{"/nodes/1", "h", "duplicate name 'h' (first defined at /nodes/0)"},
                                              {"/nodes/2", "x", "duplicate name 'x' (first defined at /inputs/x)"}});
  // a reads c, c reads b, b reads a: reported once, where the walk from a closes
  // the loop; y, which reads c, is skipped.
  expect_diagnostics("cycle.json", {{"/nodes/1/inputs/0", "b", "cycle: a -> c -> b -> a"}});
  // The nameless node is reported; "out", which reads it, is not.
  expect_diagnostics("node_without_name.json", {{"/nodes/1/name", "", "node has no \"name\""}});
  expect_diagnostics("op_and_layer.json", {{"/nodes/0", "out", "either \"op\" or \"layer\", not both"}});
  expect_diagnostics("gradient_non_param.json",
                     {{"/gradients/h", "h", "'h' is a matmul node, not a param"}});
}

TEST_CASE("frontend errors: a running statistic the optimizer would also train") {
  expect_diagnostics("trainable_running_stats.json",
                     {{"/nodes/0", "bn", "batch_norm's running_mean 'mean' is a trainable param, but the training step "
                                         "updates it itself: declare it with \"trainable\": false"}});
}

TEST_CASE("frontend errors: attributes") {
  expect_diagnostics("missing_attribute.json", {{"/nodes/0/units", "hidden", "missing required attribute 'units'"}});
  expect_diagnostics("ill_typed_attribute.json",
                     {{"/nodes/0/transpose_b", "h", "attribute 'transpose_b': expected true or false, got \"yes\""}});
  expect_diagnostics("out_of_range_attribute.json",
                     {{"/nodes/0/filters", "conv1", "attribute 'filters': value 0 is out of range [1, 65536]"}});
  expect_diagnostics("unknown_attribute.json",
                     {{"/nodes/0/transpose", "h", "unknown attribute 'transpose' for matmul (did you mean 'transpose_a'?)"}});
  expect_diagnostics("layer_unknown_attribute.json",
                     {{"/nodes/0/activaton", "out", "unknown attribute 'activaton' for dense layer (did you mean 'activation'?)"}});
  expect_diagnostics("bad_initializer.json",
                     {{"/params/w/init", "w", "unknown initializer 'he_normall' (did you mean 'he_normal'?)"}});
}

TEST_CASE("frontend errors: shapes") {
  expect_diagnostics("matmul_shape_mismatch.json",
                     {{"/nodes/0", "h", "inner dimensions differ: a [?,784] has K=784, b [748,128] has K=748"}});
  expect_diagnostics("broadcast_mismatch.json",
                     {{"/nodes/1", "hb", "shapes [?,128] and [64] do not broadcast: dimension 1 is 128 vs 64"}});
  expect_diagnostics("conv_channel_mismatch.json", {{"/nodes/0", "conv", "input has 3 channels"}});
  expect_diagnostics("reshape_count_mismatch.json",
                     {{"/nodes/0", "flat", "changes the element count (784 vs 748 per batch item)"}});
  expect_diagnostics("open_dim_not_first.json",
                     {{"/inputs/x/shape", "x", "only the leading (batch) dimension may be open (-1)"}});
}

TEST_CASE("frontend errors: numbers that cannot be held are refused before use") {
  // 1e999 overflows a double: located by path and by line/column, then the rest is still checked.
  expect_diagnostics("non_finite_constant.json",
                     {{"/nodes/0/value", "scale", "number 1e999 is not finite (too large for a double), at line 6, column 50"}});
  // 100000 * 100000 * 100 = 1e12 elements (4 TB of f32) is over the 2^31-element limit.
  expect_diagnostics("absurd_size.json",
                     {{"/params/w/shape", "w", "param shape [100000,100000,100] is absurdly large (over 2^31 elements)"}});
}

TEST_CASE("frontend errors: five independent problems are all reported, in file order") {
  // Nodes a (reads the failed hb) and the outputs naming failed nodes add nothing.
  expect_diagnostics("five_errors.json",
                     {{"/nodes/1", "hb", "shapes [?,16] and [3] do not broadcast"},
                      {"/nodes/3/transpose_b", "z", "attribute 'transpose_b': expected true or false, got \"no\""},
                      {"/nodes/4/op", "y", "unknown op 'softmaxx' (did you mean 'softmax'?)"},
                      {"/nodes/5/inputs/0", "loss", "unknown input 'y_' (did you mean 'y'?)"},
                      {"/nodes/6/padding", "pool", "attribute 'padding': expected \"valid\", \"same\" or [top, left, bottom, right], got \"full\""}});
}

static std::vector<kiln::Diagnostic> diagnostics_of_text(const std::string& text) {
  try {
    kiln::parse_graph(text, "inline.json");
  } catch (const kiln::GraphError& e) {
    return e.diagnostics;
  }
  FAIL("parsed without error: " << text);
  return {};
}

TEST_CASE("frontend errors: what cannot be read is reported once, never again by its readers") {
  // "inputs" is not an object: "x" is not declared, but the node and the
  // output reading it say nothing (the real problem is already reported).
  auto d = diagnostics_of_text(R"({"format": "kiln.graph/1", "name": 5, "inputs": [1],
      "nodes": [{"name": "y", "op": "relu", "inputs": ["x"]}], "outputs": {"y": "y", "z": "x"}})");
  REQUIRE(d.size() == 2);
  CHECK(d[0].path == "/name");
  CHECK(d[0].message == "name must be a string, got 5");
  CHECK(d[1].path == "/inputs");
  CHECK(d[1].message == "inputs must be a JSON object");

  // The first node has nothing to read; the nodes reading it in sequence are skipped.
  d = diagnostics_of_text(R"({"format": "kiln.graph/1", "inputs": {"x": {"shape": [-1, 4]}},
      "nodes": [{"name": "a", "layer": "activation", "activation": "relu"},
                {"name": "b", "layer": "activation", "activation": "linear"},
                {"name": "c", "op": "add", "inputs": ["a", "b"]}], "outputs": {"y": "c"}})");
  REQUIRE(d.size() == 1);
  CHECK(d[0].path == "/nodes/0");
  CHECK(d[0].node == "a");
  CHECK(d[0].message == "node has no \"inputs\" and no node before it to read");
}

TEST_CASE("frontend errors: layer windows and initializers are checked at their own keys") {
  auto d = diagnostics_of_text(R"({"format": "kiln.graph/1", "inputs": {"x": {"shape": [-1, 8, 8, 2]}},
      "nodes": [{"name": "c", "layer": "conv2d", "inputs": ["x"], "filters": 3, "kernel": [2.5, 3],
                 "kernel_init": "he_normall", "bias_init": {"kind": "normal", "stdev": 1}},
                {"name": "p", "layer": "maxpool2d", "inputs": ["x"], "pool": [1, 2, 3]}],
      "outputs": {"y": "p"}})");
  REQUIRE(d.size() == 4);
  CHECK(d[0].path == "/nodes/0/bias_init");
  CHECK(d[0].message.find("unknown attribute 'stdev' for initializer normal (did you mean 'stddev'?)") != std::string::npos);
  CHECK(d[1].path == "/nodes/0/kernel");
  CHECK(d[1].message.find("expected one integer in [1, 65536] or a pair [h, w]") != std::string::npos);
  CHECK(d[2].path == "/nodes/0/kernel_init");
  CHECK(d[2].message.find("unknown initializer 'he_normall' (did you mean 'he_normal'?)") != std::string::npos);
  CHECK(d[3].path == "/nodes/1/pool");
  CHECK(d[3].node == "p");
}

TEST_CASE("frontend errors: nesting deeper than any graph needs is refused") {
  std::string deep = "{\"format\": \"kiln.graph/1\", \"name\": " + std::string(200, '[') + std::string(200, ']') + "}";
  try {
    kiln::parse_graph(deep, "deep.json");
    FAIL("parsed");
  } catch (const kiln::GraphError& e) {
    REQUIRE(e.diagnostics.size() == 1);
    // The object is level 1; the 64th "[" (column 35 + 64) opens level 65.
    CHECK(e.diagnostics[0].message == "JSON nested deeper than 64 levels at line 1, column 99; no graph needs that");
  }
}

TEST_CASE("kiln check: exit 1 with located errors, 2 for usage errors, ok for valid graphs") {
  auto bad = run_kiln("check " + kFixtures + "unknown_input.json");
  CHECK(bad.exit_code == 1);
  CHECK(bad.output.find("unknown_input.json: /nodes/0/inputs/1 (node 'h'): unknown input 'w11' (did you mean 'w1'?)") !=
        std::string::npos);

  auto usage = run_kiln("check --no-such-flag " + kFixtures + "unknown_input.json");
  CHECK(usage.exit_code == 2);
  auto no_args = run_kiln("check");
  CHECK(no_args.exit_code == 2);

  std::string graphs = std::string(KILN_SOURCE_DIR) + "/graphs/";
  auto good = run_kiln("check " + graphs + "cnn_mnist.json " + graphs + "mlp_cifar10.json");
  CHECK(good.exit_code == 0);
  // 56,394 = conv 3*3*1*32+32 + 3*3*32*64+64 + 3*3*64*64+64 + dense 576*10+10.
  CHECK(good.output.find("cnn_mnist.json: ok") != std::string::npos);
  CHECK(good.output.find("56,394 params") != std::string::npos);
  // 3,157,002 = 3072*1024 + 1024 + 1024*10 + 10.
  CHECK(good.output.find("3,157,002 params") != std::string::npos);
}

TEST_CASE("frontend: hand-written gradients attach to their params, and constants do not read the node before") {
  // The README's linear regression: dL/dw = x^T (2 (y - t) / N) for the batch-mean MSE.
  kiln::Graph g = kiln::parse_graph(R"({"format": "kiln.graph/1", "name": "linear_regression",
      "inputs": {"x": {"shape": [-1, 3]}, "t": {"shape": [-1, 1]}},
      "params": {"w": {"shape": [3, 1], "init": {"kind": "normal", "stddev": 0.01}}},
      "nodes": [
        {"name": "y", "op": "matmul", "inputs": ["x", "w"]},
        {"name": "loss", "op": "mse", "inputs": ["y", "t"]},
        {"name": "diff", "op": "sub", "inputs": ["y", "t"]},
        {"name": "n", "op": "dim_size", "inputs": ["x"], "axis": 0},
        {"name": "two", "op": "constant", "value": 2.0},
        {"name": "scale", "op": "div", "inputs": ["two", "n"]},
        {"name": "dy", "op": "mul", "inputs": ["diff", "scale"]},
        {"name": "dw", "op": "matmul", "inputs": ["x", "dy"], "transpose_a": true}],
      "outputs": {"logits": "y", "loss": "loss"}, "gradients": {"w": "dw"}})");
  REQUIRE(g.gradients.size() == 1);
  auto [param, grad] = *g.gradients.begin();
  CHECK(g.node(param).name == "w");
  CHECK(g.node(grad).name == "dw");
  CHECK(kiln::type_str(g.node(grad).type) == "f32[3,1]");
  CHECK(g.node(g.find("two")).inputs.empty());
  CHECK(kiln::param_count(g) == 3);
}
