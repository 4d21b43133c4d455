// main() for every fuzz target (see fuzz_target.h).
//
//   fuzz_X FILE...   replays the files: prints "accepted" or the error each
//                    gets; a finding crashes or aborts here too, under a debugger if need be
//   fuzz_X           built by afl-clang-fast++: AFL++ persistent mode (the
//                    test cases arrive in shared memory, many per process;
//                    outside afl-fuzz it reads one from stdin). Built by a
//                    plain compiler: parses stdin once.
#include <unistd.h>  // read(): __AFL_FUZZ_TESTCASE_LEN reads stdin outside afl-fuzz

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <vector>

#include "tests/fuzz/fuzz_target.h"

namespace {

int replay_files(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "%s: cannot open %s\n", argv[0], argv[i]);
      return 2;
    }
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::string error = fuzz_one(bytes);
    std::printf("%s: %s\n", argv[i], error.empty() ? "accepted" : ("rejected: " + error).c_str());
  }
  return 0;
}

}  // namespace

#ifdef __AFL_FUZZ_TESTCASE_LEN

__AFL_FUZZ_INIT();

int main(int argc, char** argv) {
  fuzz_setup();
  if (argc > 1) return replay_files(argc, argv);
  __AFL_INIT();
  const unsigned char* buf = __AFL_FUZZ_TESTCASE_BUF;
  while (__AFL_LOOP(10000)) fuzz_one(std::span<const uint8_t>(buf, __AFL_FUZZ_TESTCASE_LEN));
  return 0;
}

#else

int main(int argc, char** argv) {
  fuzz_setup();
  if (argc > 1) return replay_files(argc, argv);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  fuzz_one(bytes);
  return 0;
}

#endif
