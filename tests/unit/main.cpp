// The test binary's main: compiles in tests (and the kiln processes they
// start) use a compile cache of their own, never the user's ~/.cache/kiln.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

int main(int argc, char** argv) {
  if (!std::getenv("KILN_CACHE_DIR")) {
    auto dir = std::filesystem::temp_directory_path() / ("kiln_test_compile_cache_" + std::to_string(getuid()));
    setenv("KILN_CACHE_DIR", dir.c_str(), 1);
  }
  return doctest::Context(argc, argv).run();
}
