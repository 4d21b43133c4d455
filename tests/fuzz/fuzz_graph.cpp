// Fuzz target for the graph frontend: whatever the bytes, parse_graph either
// returns a verified Graph or throws GraphError. A crash, a sanitizer report,
// a hang or any other exception is a finding.
//
// Built by afl-clang-fast++ it runs in AFL++ persistent mode (the test case
// arrives in shared memory, many per process). Built by a plain compiler it is
// a main() that parses the files named on its command line (or stdin), to
// replay a finding under a debugger.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "compiler/frontend/graph_json.h"
#include "compiler/ops/registry.h"

static void parse_one(const std::string& text) {
  try {
    kiln::parse_graph(text, "<fuzz>");
  } catch (const kiln::GraphError&) {
    // the expected outcome for most inputs
  }
}

#ifdef __AFL_FUZZ_TESTCASE_LEN

__AFL_FUZZ_INIT();

int main() {
  kiln::OpRegistry::get();  // built once, before the fork server starts
  __AFL_INIT();
  const unsigned char* buf = __AFL_FUZZ_TESTCASE_BUF;
  while (__AFL_LOOP(10000)) {
    size_t len = __AFL_FUZZ_TESTCASE_LEN;
    parse_one(std::string(reinterpret_cast<const char*>(buf), len));
  }
  return 0;
}

#else

int main(int argc, char** argv) {
  if (argc < 2) {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    parse_one(ss.str());
    return 0;
  }
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "fuzz_graph: cannot open %s\n", argv[i]);
      return 2;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    parse_one(ss.str());
  }
  return 0;
}

#endif
