// Fuzz target for the ONNX importer: whatever the bytes (a model mutated
// from the backend tests' models), import_model either returns a kiln graph
// or throws ImportError naming what is wrong.
#include "compiler/frontend/onnx/onnx_import.h"
#include "compiler/ops/registry.h"
#include "tests/fuzz/fuzz_target.h"

void fuzz_setup() { kiln::OpRegistry::get(); }

std::string fuzz_one(std::span<const uint8_t> bytes) {
  return accepted_or_refused<kiln::onnx::ImportError>([&] { kiln::onnx::import_model(fuzz_text(bytes), "<fuzz>"); });
}
