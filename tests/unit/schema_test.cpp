// graphs/schema/kiln.graph.schema.json accepts every graph in graphs/, rejects
// the structurally malformed fixtures and accepts the semantically wrong ones
// (tools/validate_graphs.py holds the list and does the checking).
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstdio>
#include <string>

TEST_CASE("schema: graphs validate, malformed fixtures are rejected") {
  std::string cmd = "cd '" + std::string(KILN_SOURCE_DIR) + "' && python3 tools/validate_graphs.py 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int raw = pclose(p);
  int status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
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
