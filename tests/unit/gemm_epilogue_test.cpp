// GEMM epilogues (compiler/lower/gemm_epilogue.cpp, codegen/gemm_driver.cpp):
// the MLP's weight update runs inside its gradient gemm, and an elementwise
// consumer of a product gives the interpreter's values through both codegen
// paths (one block of depth: the product stays in a block on the stack;
// K > KC: C accumulates, the last block runs the epilogue), at odd sizes,
// and bit-identical on 1, 2 and 3 threads.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <regex>

#include "compiler/autodiff/train_step.h"
#include "compiler/codegen/programs.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/frontend/train_spec.h"
#include "compiler/lower/gemm_blocking.h"
#include "compiler/lower/gemm_epilogue.h"
#include "tests/unit/codegen_helpers.h"

using namespace kiln;
using namespace kiln::codegen_test;

namespace {

std::string source(const std::string& rel) { return std::string(KILN_SOURCE_DIR) + "/" + rel; }

// y = (a @ b) * c + c: one flat elementwise loop over the product.
void add_scaled_product(JitCase& t, const std::string& name, int64_t k, int64_t n, DType dt = DType::f32) {
  NodeId a = t.input(name + "_a", {-1, k}, -1, 1, dt);
  NodeId b = t.input(name + "_b", {k, n}, -1, 1, dt);
  NodeId c = t.input(name + "_c", {-1, n}, -1, 1, dt);
  NodeId p = t.op("matmul", {a, b});
  t.out(name, t.op("add", {t.op("mul", {p, c}), c}));
}

// y = relu(a @ b + bias): the consumer is a rows x columns nest that reads
// the bias at the column.
void add_biased_product(JitCase& t, const std::string& name, int64_t k, int64_t n, DType dt = DType::f32) {
  NodeId a = t.input(name + "_a", {-1, k}, -1, 1, dt);
  NodeId b = t.input(name + "_b", {k, n}, -1, 1, dt);
  NodeId bias = t.input(name + "_bias", {n}, -1, 1, dt);
  t.out(name, t.op("relu", {t.op("add", {t.op("matmul", {a, b}), bias})}));
}

const lower::Kernel* gemm_with_epilogue(const lower::Program& p, const std::string& entry) {
  for (int k : p.entry(entry)->kernels) {
    const lower::Kernel& kernel = p.kernels[static_cast<size_t>(k)];
    if (kernel.kind == lower::KernelKind::Gemm && !kernel.body.empty()) return &kernel;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("gemm epilogue: the MLP's w1 update runs inside the gemm of its gradient") {
  Graph g = load_graph(source("graphs/mlp_cifar10.json"));
  TrainSpec spec = expand_sweeps(load_train_spec(source("graphs/experiments/e2_mlp_autodiff_b64.json"))).front();
  apply_train_spec(g, spec);
  TrainStepConfig config = train_step_config(spec);
  auto graphs = codegen::program_graphs(std::move(g), &config);
  std::vector<std::string> why;
  lower::Program p = lower::lower_program("mlp", graphs->entries(), {.max_batch = 64, .why = &why});
  const lower::Program& cp = p;
  int w1 = -1;
  for (size_t b = 0; b < cp.buffers.size(); ++b)
    if (cp.buffers[b].name == "w1" && cp.buffers[b].storage == lower::Storage::Param) w1 = static_cast<int>(b);
  REQUIRE(w1 >= 0);
  // Exactly one kernel of the step writes w1, and it is the gemm x^T @ dH.
  std::vector<const lower::Kernel*> writers;
  for (int k : cp.entry("train_step")->kernels) {
    const lower::Kernel& kernel = cp.kernels[static_cast<size_t>(k)];
    if (std::find(kernel.writes.begin(), kernel.writes.end(), w1) != kernel.writes.end()) writers.push_back(&kernel);
  }
  REQUIRE(writers.size() == 1);
  const lower::Kernel& upd = *writers[0];
  CHECK(upd.kind == lower::KernelKind::Gemm);
  CHECK(upd.gemm.trans_a);
  CHECK(upd.node == "w1/update/new_param");
  REQUIRE(upd.body.size() == 1);
  CHECK(upd.gemm.epilogue_value >= 0);
  CHECK(lower::print_kernel(cp, upd).find("epilogue, on each block of the product") != std::string::npos);
  CHECK(std::any_of(why.begin(), why.end(), [](const std::string& l) {
    return l.find("epilogue: ") != std::string::npos && l.find("w1/update/new_param") != std::string::npos;
  }));
  // The forward product x @ w1 feeds the bias add and relu (node a) over rows and columns: that nest is its epilogue.
  CHECK(std::any_of(why.begin(), why.end(), [](const std::string& l) {
    return l.find("gemm k0_h: epilogue: ") != std::string::npos && l.find("(node a)") != std::string::npos;
  }));
}

TEST_CASE("gemm epilogue: a per-column bias (rows x columns nest) matches the interpreter, odd sizes, f64 and 128 bits") {
  JitCase t(5, 8);
  add_biased_product(t, "shallow", 37, 70);
  add_biased_product(t, "deep", 600, 33);   // K > KC: the epilogue after the last block
  add_biased_product(t, "wide", 20, 1100);  // two NC blocks: the column restarts at col0
  std::vector<std::string> why;
  auto p = lower::lower_program("t", {{"eval_step", &t.g, {"shallow", "deep", "wide"}, {}}}, {.max_batch = 8, .why = &why});
  int nests = 0;
  for (int k : p.entry("eval_step")->kernels) {
    const lower::Kernel& kernel = p.kernels[static_cast<size_t>(k)];
    if (kernel.kind != lower::KernelKind::Gemm) CHECK(kernel.node.rfind("output_", 0) == 0);  // bias + relu run inside
    nests += kernel.kind == lower::KernelKind::Gemm && kernel.body.size() == 1 &&
             kernel.body[0].body.size() == 1 && kernel.body[0].body[0].kind == lower::StmtKind::Loop;
  }
  CHECK(nests == 3);
  t.check(1e-5);
  t.check(1e-5, 128);
  JitCase d(7, 8);  // f64: the Loop IR expansion binds row and column from the element
  add_biased_product(d, "double", 19, 45, DType::f64);
  d.check(1e-12);
}

TEST_CASE("gemm epilogue: a bias over [N,H,W,C] after a 1x1 convolution runs as [N*H*W] x [C] inside the gemm") {
  JitCase t(3, 4);
  NodeId x = t.input("x", {-1, 5, 6, 7});
  NodeId w = t.input("w", {1, 1, 7, 9});
  NodeId bias = t.input("bias", {9});
  NodeId conv = t.op("conv2d", {x, w});
  t.out("y", t.op("relu", {t.op("add", {conv, bias})}));
  std::vector<std::string> why;
  auto p = lower::lower_program("t", {{"eval_step", &t.g, {"y"}, {}}}, {.max_batch = 4, .why = &why});
  const lower::Kernel* g = gemm_with_epilogue(p, "eval_step");
  REQUIRE(g != nullptr);
  REQUIRE(g->body.size() == 1);
  const lower::Stmt& rows = g->body[0];
  REQUIRE(rows.body.size() == 1);
  CHECK(lower::print_expr(rows.body[0].hi) == "9");  // the columns: the channels
  t.check(1e-5);
  auto cp = codegen::compile_entries("threads", {{"eval_step", &t.g, {"y"}, {}}}, {.max_batch = 4});
  auto runs = run_on_threads(*cp, "eval_step", 3, t.feeds);
  for (size_t r = 1; r < runs.size(); ++r) CHECK(runs[r].at("y").data == runs[0].at("y").data);
}

TEST_CASE("gemm epilogue: one block of depth and K > KC, odd sizes, match the interpreter") {
  JitCase t(5, 8);
  add_scaled_product(t, "shallow", 37, 70);   // K <= KC: the product never reaches C
  add_scaled_product(t, "deep", 600, 33);     // three KC blocks: the epilogue after the last
  add_scaled_product(t, "wide", 20, 1100);    // two NC blocks
  auto p = lower::lower_program("t", {{"eval_step", &t.g, {"shallow", "deep", "wide"}, {}}}, {.max_batch = 8});
  int with_epilogue = 0;
  for (int k : p.entry("eval_step")->kernels)
    with_epilogue += p.kernels[static_cast<size_t>(k)].kind == lower::KernelKind::Gemm &&
                     !p.kernels[static_cast<size_t>(k)].body.empty();
  CHECK(with_epilogue == 3);
  REQUIRE(gemm_with_epilogue(p, "eval_step") != nullptr);
  t.check(1e-5);
}

TEST_CASE("gemm epilogue: 128-bit vectors (NR = 8, other row tails) and the f64 Loop IR expansion") {
  JitCase t(7, 8);
  add_scaled_product(t, "narrow", 19, 45);
  t.check(1e-5, 128);
  // f64 products take the Loop IR expansion: C is stored, then the epilogue loop reads it.
  JitCase d(7, 8);
  add_scaled_product(d, "double", 19, 45, DType::f64);
  auto p = lower::lower_program("t", {{"eval_step", &d.g, {"double"}, {}}}, {.max_batch = 8});
  REQUIRE(gemm_with_epilogue(p, "eval_step") != nullptr);
  d.check(1e-12);
}

TEST_CASE("gemm epilogue: bit-identical on 1, 2 and 3 threads, rows split and column panels split") {
  JitCase t(64, 64);
  add_scaled_product(t, "small_m", 300, 1100);  // M = 64: column panels across threads
  NodeId tall = t.input("tall", {400, 300});
  NodeId w = t.input("w", {300, 1100});
  NodeId c = t.input("c", {400, 1100});
  t.out("large_m", t.op("mul", {t.op("matmul", {tall, w}), c}));
  auto cp = codegen::compile_entries("threads", {{"eval_step", &t.g, {"small_m", "large_m"}, {}}}, {.max_batch = 64});
  REQUIRE(gemm_with_epilogue(cp->loops(), "eval_step") != nullptr);
  auto runs = run_on_threads(*cp, "eval_step", 64, t.feeds);
  for (const char* name : {"small_m", "large_m"}) {
    INFO(name);
    for (size_t r = 1; r < runs.size(); ++r) CHECK(runs[r].at(name).data == runs[0].at(name).data);
  }
  t.check(1e-5);
}

// A product deeper than one depth block accumulates in C; the epilogue's
// one output takes it in place (gemm_epilogue.cpp, in_place_output): each
// element's product is read before its result overwrites it, so C is no
// buffer of its own. A shallow product never reaches C (it goes to a block
// on the stack) and keeps its C; so does a consumer whose output is another
// type (a comparison's booleans).
TEST_CASE("gemm epilogue: a deep product lands in the epilogue's output, which it overwrites, a shallow one or another type not") {
  JitCase t(6, 8);
  add_biased_product(t, "shallow", 37, 70);
  add_biased_product(t, "deep", 600, 33);
  NodeId a = t.input("cmp_a", {-1, 400});
  NodeId b = t.input("cmp_b", {400, 24});
  NodeId threshold = t.input("cmp_threshold", {24});
  t.out("positive", t.op("compare", {t.op("matmul", {a, b}), threshold}, {{"kind", "gt"}}));
  const std::vector<std::string> names{"shallow", "deep", "positive"};
  auto p = lower::lower_program("t", {{"eval_step", &t.g, names, {}}}, {.max_batch = 8});
  int in_place = 0, apart = 0;
  for (int k : p.entry("eval_step")->kernels) {
    const lower::Kernel& kernel = p.kernels[static_cast<size_t>(k)];
    if (kernel.kind != lower::KernelKind::Gemm || kernel.body.empty()) continue;
    const lower::Stmt& store = lower::element_loop(kernel.body[0]).body.back();
    REQUIRE(store.kind == lower::StmtKind::Store);
    const bool boolean = p.buffers.at(static_cast<size_t>(store.target)).dtype == DType::boolean;
    const bool deep = kernel.gemm.k->ival > lower::kGemmMatrixMaxKC;
    CAPTURE(kernel.name);
    CHECK((kernel.gemm.c == store.target) == (deep && !boolean));
    in_place += kernel.gemm.c == store.target;
    apart += kernel.gemm.c != store.target;
  }
  CHECK(in_place == 1);  // deep
  CHECK(apart == 2);     // shallow, positive
  t.check(1e-5);
  auto cp = codegen::compile_entries("in_place", {{"eval_step", &t.g, names, {}}}, {.max_batch = 8});
  auto runs = run_on_threads(*cp, "eval_step", 6, t.feeds);
  for (const std::string& name : names)
    for (size_t r = 1; r < runs.size(); ++r) {
      CAPTURE(name);
      CHECK(runs[r].at(name).data == runs[0].at(name).data);
    }
}

// Over one depth block the epilogue runs on the accumulators, in micro-
// kernels of the gemm's own (gemm_tile_epilogue.cpp), whichever way A is
// read: in place (a few column panels), packed, or through a convolution's
// windows; a flat loop too. The same operations on the same values: the
// bits of the block on the stack (KILN_NO_TILE_EPILOGUE=1), which the
// interpreter checks too. A deeper product keeps reading C back, and an
// epilogue that reads another buffer element by element keeps its pass
// along the block's rows: neither gets a micro-kernel of its own.
TEST_CASE("gemm epilogue: over one depth block it runs on the micro-kernel's registers at every width, with the block's bits") {
  JitCase t(9, 16);
  add_biased_product(t, "narrow", 37, 40);
  add_biased_product(t, "wide", 24, 200);
  add_scaled_product(t, "reads_elements", 16, 70);
  t.out("flat", t.op("relu", {t.op("matmul", {t.input("flat_a", {-1, 19}), t.input("flat_b", {19, 50})})}));
  add_biased_product(t, "deep", 600, 33);
  add_scaled_product(t, "deep_flat", 700, 90);
  NodeId x = t.input("x", {-1, 9, 7, 5});
  NodeId w = t.input("w", {3, 3, 5, 24});
  NodeId bias = t.input("bias", {24});
  t.out("conv", t.op("relu", {t.op("add", {t.op("conv2d", {x, w}), bias})}));
  const std::vector<std::string> outs{"narrow", "wide", "reads_elements", "flat", "deep", "deep_flat", "conv"};
  auto p = lower::lower_program("t", {{"eval_step", &t.g, outs, {}}}, {.max_batch = 16});
  std::vector<std::string> gemms, old_path;
  for (int k : p.entry("eval_step")->kernels) {
    const lower::Kernel& kernel = p.kernels[static_cast<size_t>(k)];
    if (kernel.kind != lower::KernelKind::Gemm || kernel.body.empty()) continue;
    const bool reads_elements = kernel.gemm.k->ival == 16;  // (the only product of K = 16)
    (kernel.gemm.k->ival > lower::kGemmMatrixMaxKC || reads_elements ? old_path : gemms).push_back(kernel.name);
  }
  REQUIRE(gemms.size() == 4);
  REQUIRE(old_path.size() == 3);
  auto own_microkernel = [](const std::string& ir, const std::string& kernel) {
    return std::regex_search(ir, std::regex("define internal void @kiln_gemm_ukr_[A-Za-z0-9_]*_" + kernel + "\\("));
  };
  for (int bits : {128, 256, 512}) {
    INFO(bits << "-bit vectors");
    const std::string ir = codegen::llvm_ir_text(p, "", {.vector_bits = bits, .optimize = false});
    for (const std::string& g : gemms) CHECK(own_microkernel(ir, g));
    for (const std::string& g : old_path) CHECK_FALSE(own_microkernel(ir, g));
  }
  const auto in_registers = t.check(1e-5);
  setenv("KILN_NO_TILE_EPILOGUE", "1", 1);
  const std::string ir = codegen::llvm_ir_text(p, "", {.optimize = false});
  const auto through_block = t.check(1e-5);
  unsetenv("KILN_NO_TILE_EPILOGUE");
  for (const std::string& g : gemms) CHECK_FALSE(own_microkernel(ir, g));
  for (const std::string& name : outs) {
    INFO(name);
    CHECK(in_registers.at(name).data == through_block.at(name).data);
  }
}
