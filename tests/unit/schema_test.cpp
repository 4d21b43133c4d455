// graphs/schema/kiln.graph.schema.json accepts every graph in graphs/, rejects
// the structurally malformed fixtures and accepts the semantically wrong ones
// (tools/validate_graphs.py holds the list and does the checking).
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "test_util.h"

TEST_CASE("schema: graphs validate, malformed fixtures are rejected") {
  auto [status, out] = kiln::test::run_command("cd '" + std::string(KILN_SOURCE_DIR) + "' && python3 tools/validate_graphs.py");
  INFO(out);
  if (status == 2) FAIL("the python3 jsonschema module is missing: run tools/setup.sh --deps (it installs python3-jsonschema)");
  if (status == 127) FAIL("python3 is missing: run tools/setup.sh --deps");
  CHECK(status == 0);
  // At least the 3 graphs and 28 fixtures there are today were looked at: a
  // run that silently checked nothing must not pass.
  auto at = out.find("validate_graphs: ");
  REQUIRE(at != std::string::npos);
  int checked = -1, failures = -1;
  REQUIRE(std::sscanf(out.c_str() + at, "validate_graphs: %d files checked, %d failures", &checked, &failures) == 2);
  CHECK(checked >= 31);
  CHECK(failures == 0);
}

TEST_CASE("schema and README: the op and layer lists are the registry's (tools/gen_op_docs.py --check)") {
  auto [status, out] = kiln::test::run_command("cd '" + std::string(KILN_SOURCE_DIR) +
                                               "' && python3 tools/gen_op_docs.py --check --kiln '" + KILN_BINARY + "'");
  INFO(out);
  CHECK(status == 0);
  CHECK(out.find("schema and README list all") != std::string::npos);
  // The schema's op list really holds the new op set (a sample of it).
  auto [s2, schema] = kiln::test::run_command("cat '" + std::string(KILN_SOURCE_DIR) + "/graphs/schema/kiln.graph.schema.json'");
  for (const char* op : {"\"gather\"", "\"cumsum\"", "\"gelu\"", "\"scatter_add\""}) {
    CAPTURE(op);
    CHECK(schema.find(op) != std::string::npos);
  }
}
