// Fuzz target for the training-spec reader (kiln.train/1): whatever the bytes,
// parse_train_spec either returns a spec or throws SpecError.
//
// The spec is parsed as if it sat in graphs/experiments/, so the relative
// paths of the seeds (graphs/experiments/*.json) resolve: "../mlp_cifar10.json"
// exists and "../optimizers/interpolated_gd.json" loads a real update rule.
#include "compiler/frontend/train_spec.h"
#include "compiler/ops/registry.h"
#include "tests/fuzz/fuzz_target.h"

void fuzz_setup() { kiln::OpRegistry::get(); }

std::string fuzz_one(std::span<const uint8_t> bytes) {
  return accepted_or_refused<kiln::SpecError>([&] { kiln::parse_train_spec(fuzz_text(bytes), KILN_SOURCE_DIR "/graphs/experiments/fuzz.json"); });
}
