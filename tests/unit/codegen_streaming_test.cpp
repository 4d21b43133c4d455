// Streaming stores (KernelEmitter::streamable, emit_store): an arena output
// of kStreamStoreBytes or more that its kernel never reads is stored past the
// caches (non-temporal stores) at batches where it is that large, when the
// vector's address is aligned; smaller batches, outputs read back within the
// kernel and graph outputs keep ordinary stores. The values must not change,
// on any thread count: the thread pool fences the streamed stores.
#include <doctest/doctest.h>

#include "compiler/codegen/codegen.h"
#include "compiler/lower/lower_program.h"
#include "tests/unit/codegen_helpers.h"

using namespace kiln;
using kiln::codegen_test::JitCase;
using kiln::codegen_test::run_on_threads;

namespace {

// Rows of this many floats: 9 rows are 36 MB (streamed), 3 rows 12 MB (not).
constexpr int64_t kRow = int64_t{1} << 20;

// y = tanh(x), read by two kernels, so stored in the arena by its own;
// z = -y (a graph output, written to the caller's memory); s sums y's rows.
void build(JitCase& t) {
  NodeId y = t.op("tanh", {t.input("x", {-1, kRow})});
  t.out("z", t.op("neg", {y}));
  t.out("s", t.op("reduce_sum", {y}, {{"axes", {1}}}));
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("codegen: outputs past the caches' size, only written, are stored past them, and the values do not change") {
  static_assert(9 * kRow * 4 >= codegen::kStreamStoreBytes && 3 * kRow * 4 < codegen::kStreamStoreBytes);
  JitCase t(9, 9);
  build(t);
  std::vector<std::string> names{"z", "s"};
  lower::Program p = lower::lower_program("stream", {{"eval_step", &t.g, names, {}}}, {.max_batch = 9});
  for (int bits : {256, 512}) {
    INFO("vector bits " << bits);
    const std::string ir = codegen::llvm_ir_text(p, "", {.vector_bits = bits, .optimize = false});
    // y's kernel streams it (guarded by the batch's size and the address);
    // z goes to the caller's memory, s is small: ordinary stores.
    CHECK(count(ir, "!nontemporal") >= 1);
    CHECK(ir.find("%stream = icmp uge i64") != std::string::npos);
  }
  // At batch 9 y is 36 MB and streamed; at 3, 12 MB and not: the interpreter's values both ways, any thread count.
  for (int64_t batch : {9, 3}) {
    CAPTURE(batch);
    JitCase at(batch, 9);
    build(at);
    const auto got = at.check(1e-4);  // (s sums a million terms)
    auto cp = codegen::compile_entries("stream", {{"eval_step", &at.g, names, {}}}, {.max_batch = 9});
    for (const auto& run : run_on_threads(*cp, "eval_step", batch, at.feeds))
      for (const std::string& name : names) CHECK(run.at(name).data == got.at(name).data);
  }
  // A depthwise convolution finishing its sums in place in the relu's buffer
  // reads that buffer back: it keeps ordinary stores. The second
  // convolution's output is only written: its six stores stream (the left
  // and right border pixels', and four for a block of interior pixels).
  JitCase dw(18, 18);
  Attrs a;
  a["groups"] = 64;
  a["padding"] = "same";
  NodeId x = dw.input("x", {-1, 64, 128, 64});  // 2 MB an image: 36 MB at batch 18
  NodeId c1 = dw.op("conv2d", {x, dw.input("w1", {3, 3, 1, 64})}, a);
  NodeId c2 = dw.op("conv2d", {dw.op("relu", {c1}), dw.input("w2", {3, 3, 1, 64})}, a);
  dw.out("m", dw.op("reduce_max", {c2}, {{"axes", {1, 2}}}));
  lower::Program q = lower::lower_program("in_place", {{"eval_step", &dw.g, {"m"}, {}}}, {.max_batch = 18});
  const std::string qir = codegen::llvm_ir_text(q, "", {.optimize = false});
  auto function = [&](const std::string& name) {
    const size_t at = qir.find("define internal void @" + name + "(");
    REQUIRE(at != std::string::npos);
    return qir.substr(at, qir.find("\ndefine", at + 1) - at);
  };
  CHECK(count(function("k0_conv2d_p0"), "!nontemporal") == 0);
  CHECK(count(function("k2_conv2d_2_p0"), "!nontemporal") == 6);
}
