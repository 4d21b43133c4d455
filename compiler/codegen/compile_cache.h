#pragma once
// The compile cache: machine code of a lowered program, keyed by everything
// that decides it, so that compiling the same graph + spec for the same target
// again loads the code instead of running codegen (LLVM IR, optimization, instruction
// selection).
//
// Key: SHA-256 of the lowered program (its Loop IR text, which follows from
// the graph, the spec and the batch size; the graphs its entries come from;
// constant data), the target (triple, CPU, features, vector width), the codegen
// options, what is built (JIT objects or an AOT object with its symbol
// prefix), and the compiler (kiln and LLVM versions and this kiln build: a
// rebuilt compiler never reuses an older build's code).
//
// Entry: one file <dir>/<key>.kcache holding blobs (object files, an AOT
// header) behind a SHA-256 of their bytes, written atomically. An entry that
// is truncated or altered fails the check: a warning on stderr, the file is
// deleted and the caller compiles (and stores) anew; it is never loaded.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "compiler/codegen/codegen.h"
#include "compiler/codegen/host.h"

namespace kiln::codegen {

using Blob = std::vector<uint8_t>;

// KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln, else $HOME/.cache/kiln ("" when none is set).
std::string default_cache_dir();

// `kind`: "jit" or "aot:<prefix>" (the AOT object's symbols differ).
std::string compile_cache_key(const lower::Program& p, const CodegenOptions& opts, const HostTarget& target,
                              const std::string& kind);

class CompileCache {
 public:
  explicit CompileCache(std::string dir) : dir_(std::move(dir)) {}
  const std::string& dir() const { return dir_; }
  std::string entry_path(const std::string& key) const;
  // The blobs stored under `key`; nullopt on a miss or a corrupt entry (warned about and deleted).
  std::optional<std::vector<Blob>> load(const std::string& key) const;
  // Stores atomically; a cache that cannot be written only warns (compiling still succeeded).
  void store(const std::string& key, const std::vector<Blob>& blobs) const;

 private:
  std::string dir_;
};

}  // namespace kiln::codegen
