#pragma once
// What an ahead-of-time compiled program (`kiln compile G --train SPEC -o DIR`)
// exports besides its entry points: a plain-C descriptor of the program
// (storage sizes, tensor tables, entry functions, how init's inputs get their
// first values), returned by `<prefix>_program()` in the object. The helpers
// below turn it into a ProgramInfo for kiln::Program, so an AOT user links
// only kiln_runtime and the object (see tools/aot_example/).
#include <cstdint>
#include <optional>
#include <vector>

#include "runtime/program.h"
#include "runtime/tensor.h"

extern "C" {

#define KILN_AOT_ABI_VERSION 1

// Field order and types are part of the ABI: the compiler emits these structs
// as constant data (compiler/codegen/aot.cpp builds the same layouts).
typedef struct kiln_aot_tensor {
  const char* name;
  int32_t type;          // kiln::ElemType (f32 0, f64 1, i32 2, i64 3, bool 4)
  int32_t rank;
  const int64_t* shape;  // rank dims; -1 = the open batch dimension
  int64_t offset;        // persistent tensors: bytes into params or state
  int32_t state;         // persistent tensors: 1 = optimizer state, 0 = param
  int32_t reserved;
} kiln_aot_tensor;

typedef struct kiln_aot_entry {
  const char* name;      // init, predict, eval_step, train_step
  kiln_entry_fn fn;
  int32_t num_inputs, num_outputs;
  const kiln_aot_tensor* inputs;
  const kiln_aot_tensor* outputs;
} kiln_aot_entry;

typedef struct kiln_aot_program {
  int32_t abi_version;   // KILN_AOT_ABI_VERSION
  int32_t num_persistent, num_entries, reserved;
  const char* name;
  int64_t max_batch, arena_bytes, param_bytes, state_bytes;
  const kiln_aot_tensor* persistent;
  const kiln_aot_entry* entries;
  // JSON: {"seed": N or null, "inputs": [{"name": init input, "init": {...}}]}
  // with a runtime/init initializer spec per param, {"kind": "zeros"} or
  // {"kind": "copy", "of": param} per optimizer state.
  const char* init_json;
  const char* compiled_for;  // "kiln 0.1.0, LLVM 19.1.1, <triple> <cpu>"
} kiln_aot_program;
}

namespace kiln {

// Throws std::runtime_error when the descriptor's ABI version is not this runtime's.
ProgramInfo aot_program_info(const kiln_aot_program* desc);

// The values of init's inputs, drawn exactly as `kiln train` draws them: each
// param from its initializer with seed param_seed(seed, name) (seed: the
// spec's unless given), each state zeros or a copy of its param.
std::vector<Tensor> aot_initial_values(const kiln_aot_program* desc, std::optional<uint64_t> seed = std::nullopt);
// Runs `program`'s init entry on aot_initial_values(desc, seed).
void aot_initialize(Program& program, const kiln_aot_program* desc, std::optional<uint64_t> seed = std::nullopt);

}  // namespace kiln
