#pragma once
// Known compiler bugs a build can switch on, one at a time, to show that
// `kiln difftest` catches each (the difftest_catches_* tests):
//   vector-tail       the scalar loop after a vector body starts one element late
//   broadcast-stride  the dimension inside a broadcast one is read at stride 0 too
//   alias-still-read  an arena buffer's memory is reused one kernel before its last reader ran
// Compiled in with -DKILN_BUG_INJECTION=ON (the default for development
// builds) and chosen at run time by KILN_INJECT_BUG=<name>; without the
// option the hooks are constant false.
#include <cstdlib>
#include <cstring>

namespace kiln {

inline bool injected_bug(const char* name) {
#ifdef KILN_BUG_INJECTION
  static const char* which = std::getenv("KILN_INJECT_BUG");
  return which && std::strcmp(which, name) == 0;
#else
  (void)name;
  return false;
#endif
}

}  // namespace kiln
