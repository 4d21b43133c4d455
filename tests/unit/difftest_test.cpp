// kiln difftest's parts: the generator's graphs are valid, the shrinker finds
// a minimal failing graph, fixtures round-trip, and every fixture of a fixed
// finding (tests/fixtures/difftest) passes the checks it once failed.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "tools/difftest/difftest.h"

using namespace kiln;
using namespace kiln::difftest;

namespace {

std::string source(const std::string& rel) { return std::string(KILN_SOURCE_DIR) + "/" + rel; }

bool has_op(const Graph& g, const std::string& op) {
  for (const Node& n : g.nodes)
    if (n.op == op) return true;
  return false;
}

}  // namespace

TEST_CASE("difftest: generated graphs verify, carry a scalar loss and ranges for every input") {
  std::set<std::string> ops;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    Case c = generate(seed);
    CAPTURE(seed);
    CHECK(verify(c.model).empty());
    NodeId loss = c.model.output("loss");
    REQUIRE(loss != kNoNode);
    CHECK(c.model.node(loss).type.shape.empty());
    for (const Node& n : c.model.nodes)
      if (n.op == "input" || n.op == "param") CHECK(c.ranges.count(n.name) == 1);
    ops.insert(c.ops.begin(), c.ops.end());
    // The same seed gives the same graph.
    CHECK(generate(seed).model.nodes.size() == c.model.nodes.size());
  }
  CHECK(ops.size() > 40);  // 40 graphs reach most of the registry
}

TEST_CASE("difftest: drawn values respect index bounds and plant specials") {
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    Case c = generate(seed);
    auto v = draw_values(c, 3, 5, Planted::nan);
    for (auto& [name, r] : c.ranges) {
      const interp::Value& x = v.at(name);
      if (r.index_bound > 0)
        for (double d : x.data) CHECK((d >= 0 && d < static_cast<double>(r.index_bound)));
      if (is_float(x.dtype) && x.data.size() > 5) CHECK(std::isnan(x.data[0] + x.data[1] + x.data[2] + x.data[3] + x.data[4]));
    }
  }
}

TEST_CASE("difftest: shrinking keeps the failing op and drops the rest") {
  // A stand-in failure: "the graph contains an exp".
  Case c;
  uint64_t seed = 1;
  for (; seed < 500; ++seed) {
    c = generate(seed);
    if (has_op(c.model, "exp") && c.model.nodes.size() > 12) break;
  }
  REQUIRE(has_op(c.model, "exp"));
  Case small = shrink(c, [](const Case& t) { return has_op(t.model, "exp"); });
  CHECK(has_op(small.model, "exp"));
  CHECK(verify(small.model).empty());
  // exp, the input it reads (or what replaced it) and the loss it feeds, at most a few glue nodes.
  CHECK(small.model.nodes.size() <= 6);
  CHECK(small.model.nodes.size() < c.model.nodes.size());
}

TEST_CASE("difftest: a case survives the fixture format") {
  Case c = generate(17);
  nlohmann::json j = case_to_json(c, "what failed");
  Case back = case_from_json(nlohmann::json::parse(j.dump()), "<memory>");
  CHECK(back.seed == c.seed);
  CHECK(back.model.outputs.size() == c.model.outputs.size());
  for (auto& [name, r] : c.ranges) {
    REQUIRE(back.ranges.count(name) == 1);
    CHECK(back.ranges.at(name).index_bound == r.index_bound);
  }
  // The same graph: every node of the original is in the parsed one with its op.
  for (const Node& n : c.model.nodes) {
    NodeId id = back.model.find(n.name);
    REQUIRE(id != kNoNode);
    CHECK(back.model.node(id).op == n.op);
    CHECK(back.model.node(id).type == n.type);
  }
  CHECK_THROWS_WITH(case_from_json(nlohmann::json{{"format", "kiln.graph/1"}}, "x.json"),
                    doctest::Contains("not a kiln.difftest/1 fixture"));
}

TEST_CASE("difftest: every fixture of a fixed finding passes the checks it failed") {
  int fixtures = 0;
  for (auto& entry : std::filesystem::directory_iterator(source("tests/fixtures/difftest"))) {
    std::ifstream in(entry.path());
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j = nlohmann::json::parse(ss.str());
    CAPTURE(entry.path().filename().string());
    Case c = case_from_json(j, entry.path().string());
    CheckOptions o = fixture_options(j);
    CaseResult r = check_case(c, o);
    for (const Finding& f : r.findings) FAIL_CHECK(check_name(f.check) << ": " << f.message);
    CHECK(r.ran.size() == o.checks.size());
    ++fixtures;
  }
  CHECK(fixtures >= 3);
}
