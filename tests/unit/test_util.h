#pragma once
// Small helpers shared by the test files.
#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/wait.h>

namespace kiln::test {

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// Runs a shell command and captures what it prints (stdout and stderr).
inline CommandResult run_command(const std::string& cmd) {
  CommandResult r{-1, ""};
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Runs `kiln ARGS` from the repository root.
inline CommandResult run_kiln(const std::string& args) {
  return run_command(std::string("cd '") + KILN_SOURCE_DIR + "' && '" + KILN_BINARY + "' " + args);
}

// An environment switch (KILN_NO_WINOGRAD, ...) set for a scope: a test of
// one lowering keeps it when a faster one would take its shapes.
struct ScopedEnv {
  std::string name;
  explicit ScopedEnv(std::string n, const char* value = "1") : name(std::move(n)) { setenv(name.c_str(), value, 1); }
  ~ScopedEnv() { unsetenv(name.c_str()); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
};

inline std::string source_path(const std::string& rel) { return std::string(KILN_SOURCE_DIR) + "/" + rel; }

}  // namespace kiln::test
