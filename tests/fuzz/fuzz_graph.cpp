// Fuzz target for the graph frontend: whatever the bytes, parse_graph either
// returns a verified Graph or throws GraphError.
#include "compiler/frontend/graph_json.h"
#include "compiler/ops/registry.h"
#include "tests/fuzz/fuzz_target.h"

void fuzz_setup() { kiln::OpRegistry::get(); }

std::string fuzz_one(std::span<const uint8_t> bytes) {
  return accepted_or_refused<kiln::GraphError>([&] { kiln::parse_graph(fuzz_text(bytes), "<fuzz>"); });
}
