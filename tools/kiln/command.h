#pragma once
// Each tools/kiln/cmd_*.cpp registers its subcommands with a static
// RegisterCommand, so adding a command touches one file.
#include <CLI/CLI.hpp>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace kiln::cli {

// An error in what the user gave us (a bad graph, a missing file): exit 1.
// Usage errors (bad flags) are CLI11's and exit 2.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct CommandEntry {
  int order;  // position in --help
  std::function<void(CLI::App&)> setup;
};
std::vector<CommandEntry>& command_entries();

struct RegisterCommand {
  RegisterCommand(int order, std::function<void(CLI::App&)> setup) {
    command_entries().push_back({order, std::move(setup)});
  }
};

// Reads a whole file; throws InputError naming it when it cannot.
std::string read_file(const std::string& path);

}  // namespace kiln::cli
