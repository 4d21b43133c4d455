#pragma once
// Ahead-of-time compilation: a lowered program as one relocatable object file
// for a target CPU (the host's or a named one) plus a C header. The object
// exports `<prefix>_<entry>` for every entry point (the JIT's ABI, see
// runtime/program.h) and `<prefix>_program()`, a kiln_aot_program descriptor
// (runtime/aot_program.h); everything else in it is internal, so several
// programs link into one executable. It needs only libc/libm and the runtime's
// kiln_thread_pool_parallel_for through ctx->parallel_for.
//
// The code is built exactly as the JIT builds it (the same modules, each
// optimized on its own, then linked without further IR passes), so on the
// host it computes bit-identical results.
#include <cstdint>
#include <string>
#include <vector>

#include "compiler/codegen/codegen.h"
#include "compiler/codegen/host.h"

namespace kiln::codegen {

struct AotOptions {
  std::string prefix;      // C identifier: symbols <prefix>_train_step, ..., <prefix>_program
  std::string init_json;   // kiln_aot_program::init_json (see aot_init_json in compiler/driver)
  CodegenOptions codegen;  // target_cpu, vector_bits, cache_dir
};

struct AotResult {
  std::vector<uint8_t> object;  // ELF relocatable object
  std::string header;           // declarations of its symbols
  HostTarget target;
  bool cache_hit = false;       // object and header came from the compile cache
  std::string cache_entry;
  double ms = 0;                // wall time of emit + optimization + machine code (or the cache load)
};

// Throws std::invalid_argument for a prefix that is not a C identifier or an unknown CPU.
AotResult compile_aot(const lower::Program& p, const AotOptions& opts);

// `name` with every character that may not appear in a C identifier replaced by '_'.
std::string c_identifier_of(const std::string& name);

}  // namespace kiln::codegen
