// Fuzz target for the update-rule reader (kiln.update/1): whatever the bytes,
// parse_update_rule either returns a rule (built once for a small param) or
// throws GraphError.
#include "compiler/autodiff/update_rule.h"
#include "compiler/ops/registry.h"
#include "tests/fuzz/fuzz_target.h"

void fuzz_setup() { kiln::OpRegistry::get(); }

std::string fuzz_one(std::span<const uint8_t> bytes) {
  return accepted_or_refused<kiln::GraphError>([&] { kiln::parse_update_rule(fuzz_text(bytes), "<fuzz>"); });
}
