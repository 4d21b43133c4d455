#pragma once
// A Loop IR Program compiled to machine code in this process by LLVM's ORC
// LLJIT for the host. It hands the runtime (kiln::Program, which never sees
// the compiler) a ProgramInfo: entry points, tensor tables, storage sizes.
#include <map>
#include <memory>
#include <string>

#include "compiler/codegen/codegen.h"
#include "compiler/interp/interpreter.h"
#include "compiler/lower/lower_program.h"
#include "runtime/program.h"

namespace llvm::orc {
class LLJIT;
}

namespace kiln::codegen {

struct CompileStats {
  double lower_ms = 0;         // Graph -> Loop IR (filled by compile_entries)
  double emit_ms = 0;          // Loop IR -> LLVM IR
  double jit_ms = 0;           // optimization, instruction selection, register allocation, linking (wall time)
  double optimize_cpu_ms = 0;  // the optimization part (optimize_module), summed over the compile threads
  int threads = 1;             // compile threads
  bool cache_hit = false;      // the code came from the compile cache (emit and codegen skipped)
  std::string cache_entry;     // its cache file ("" without a cache)
  double total_ms() const { return lower_ms + emit_ms + jit_ms; }
  size_t kernels = 0;
  int64_t arena_bytes = 0, param_bytes = 0, state_bytes = 0, constant_bytes = 0;
  int64_t intermediate_bytes = 0;  // the arena without buffer reuse (sum of every intermediate)
};

class CompiledProgram {
 public:
  // Throws std::runtime_error when LLVM fails (the message says where).
  static std::unique_ptr<CompiledProgram> compile(lower::Program program, const CodegenOptions& opts = {});
  ~CompiledProgram();

  const lower::Program& loops() const { return program_; }
  // What kiln::Program needs; keeps this program's code alive through info.code.
  ProgramInfo info() const;
  // One kernel, callable on its own (see kiln_kernel_fn); throws if unknown.
  kiln_kernel_fn kernel(const std::string& name) const;
  const CompileStats& stats() const { return stats_; }
  CompileStats& stats() { return stats_; }

 private:
  CompiledProgram() = default;
  lower::Program program_;
  std::shared_ptr<llvm::orc::LLJIT> jit_;
  std::map<std::string, kiln_entry_fn> entries_;
  CompileStats stats_;
};

// Graph -> Program -> machine code, timing each stage.
std::unique_ptr<CompiledProgram> compile_entries(const std::string& name, const std::vector<lower::EntrySpec>& entries,
                                                 const lower::LowerOptions& lopts, const CodegenOptions& copts = {});

// Runs `entry` of a runtime Program over interpreter-style values (feeds by
// entry input name; params and state by name are copied into persistent
// storage first when present) and returns its outputs by name. For tests and tools.
std::map<std::string, interp::Value> run_entry(Program& prog, const std::string& entry, int64_t batch,
                                               const std::map<std::string, interp::Value>& feeds);

// A forward graph (in its inference form) through the JIT: simplified,
// compiled as eval_step for `fetch`, and run on `feeds` (inputs and params by
// name), the open batch dimension bound by the fed inputs. For tools (kiln
// run --jit, kiln onnx-test) that compare it with the interpreter.
std::map<std::string, interp::Value> run_forward(const Graph& g, const std::map<std::string, interp::Value>& feeds,
                                                 const std::vector<std::string>& fetch);
// Its first half: the program (entry eval_step) and the batch the feeds bind
// (kiln run --time calls it many times).
struct ForwardProgram {
  std::unique_ptr<Graph> graph;  // the simplified graph, which the program refers to (declared first: outlives it)
  std::unique_ptr<CompiledProgram> program;
  int64_t batch = 1;
};
ForwardProgram compile_forward(const Graph& g, const std::map<std::string, interp::Value>& feeds,
                               const std::vector<std::string>& fetch);

// Raw bytes of a value in `dtype`, and back.
std::vector<uint8_t> to_bytes(const interp::Value& v, DType dtype);
interp::Value from_bytes(const void* data, DType dtype, const Shape& shape);

}  // namespace kiln::codegen
