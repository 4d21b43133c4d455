// The Program around the kernels: buffer placement, kernel naming, the
// runtime's entry-point calls (batch checks, init, thread pool), and the
// printed stages (loops, llvm with host-width vectors, asm).
#include <doctest/doctest.h>

#include <algorithm>
#include <climits>

#include "compiler/codegen/codegen.h"
#include "compiler/codegen/vector_plan.h"
#include "compiler/codegen/host.h"
#include "compiler/codegen/jit.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/ir/builder.h"
#include "compiler/lower/lower_program.h"
#include "compiler/lower/memory_plan.h"
#include "compiler/ops/registry.h"
#include "runtime/thread_pool.h"
#include "tests/unit/test_util.h"

using namespace kiln;

static Graph cnn() { return load_graph(std::string(KILN_SOURCE_DIR) + "/graphs/cnn_mnist.json"); }

TEST_CASE("codegen: arena placement is aligned, disjoint and sized for the maximum batch") {
  Graph g = cnn();
  auto p = lower::lower_program(g.name, lower::forward_entries(g), {.max_batch = 32});
  for (const lower::Entry& e : p.entries) CHECK(e.arena_bytes <= p.arena_bytes);
  // conv1's output: 32 x 26 x 26 x 32 floats at the maximum batch.
  const lower::Buffer* conv1 = nullptr;
  for (auto& b : p.buffers)
    if (b.name == "conv1/conv2d") conv1 = &b;
  REQUIRE(conv1 != nullptr);
  CHECK(conv1->bytes(32) == 32 * 26 * 26 * 32 * 4);
  for (auto& b : p.buffers)
    if (b.storage == lower::Storage::Arena) CHECK(b.offset % lower::kBufferAlign == 0);
  // Buffers live at the same time never overlap (others may share bytes).
  const lower::Entry* eval = p.entry("eval_step");
  REQUIRE(eval != nullptr);
  auto ranges = lower::arena_live_ranges(p, eval->graph);
  CHECK(ranges.size() > 20);
  for (size_t i = 0; i < ranges.size(); ++i)
    for (size_t j = i + 1; j < ranges.size(); ++j) {
      const auto &a = ranges[i], &b = ranges[j];
      if (a.last < b.first || b.last < a.first) continue;
      int64_t ao = p.buffers[static_cast<size_t>(a.buffer)].offset, bo = p.buffers[static_cast<size_t>(b.buffer)].offset;
      INFO(p.buffers[static_cast<size_t>(a.buffer)].name << " and " << p.buffers[static_cast<size_t>(b.buffer)].name);
      CHECK((ao + a.bytes <= bo || bo + b.bytes <= ao));
    }
  for (auto& r : ranges) CHECK(p.buffers[static_cast<size_t>(r.buffer)].offset + r.bytes <= p.arena_bytes);
  // Reuse: the arena is smaller than every intermediate value side by side.
  CHECK(p.arena_bytes < p.intermediate_bytes);
  // 56,394 params (the seed's count) in their own storage.
  CHECK(p.param_bytes >= 56394 * 4);
}

TEST_CASE("codegen: kernel names carry the graph node, and the printed loops name the JSON node") {
  Graph g = cnn();
  auto p = lower::lower_program(g.name, lower::forward_entries(g), {.max_batch = 8});
  auto convs = codegen::select_kernels(p, "conv1/conv2d");
  REQUIRE(!convs.empty());
  // (the gemm: in predict a kernel that packs its filter once comes first)
  const lower::Kernel& k = *convs.back();
  CHECK(!k.gemm.packs_b);
  CHECK(k.gemm.packed_b >= 0);
  CHECK(k.name.find("_conv1__conv2d") != std::string::npos);
  CHECK(k.name[0] == 'k');
  std::string text = lower::print_kernel(p, k);
  // Its bias and relu run as the gemm's epilogue: the kernel computes the layer's output node.
  CHECK(text.find("# node conv1\n") != std::string::npos);
  CHECK(text.find("gemm %conv1/conv2d = windows(%x: 3x3 taps of 1 of 1 channels") != std::string::npos);
}

TEST_CASE("codegen: the vectorizer takes contiguous loops and reductions, not strided ones") {
  using namespace lower;
  // for j: out[j] = a[j] * x  -> vectorized
  Stmt contiguous = loop_stmt(0, c_int(0), c_int(100), {store_stmt(0, var(0), binary(Op::Mul, load(1, Scalar::f32, var(0)), c_float(2)))});
  CHECK(codegen::plan_vector_loop(contiguous).has_value());
  // for j: out[2j] = ...      -> scalar
  Stmt strided = loop_stmt(0, c_int(0), c_int(100), {store_stmt(0, binary(Op::Mul, var(0), c_int(2)), c_float(1))});
  CHECK_FALSE(codegen::plan_vector_loop(strided).has_value());
  // for j: acc = acc + a[j]   -> a reduction
  Stmt sum = loop_stmt(0, c_int(0), c_int(100), {assign_stmt(0, binary(Op::Add, local(0, Scalar::f32), load(1, Scalar::f32, var(0))))});
  auto plan = codegen::plan_vector_loop(sum);
  REQUIRE(plan.has_value());
  CHECK(plan->locals.at(0) == codegen::VectorPlan::LocalRole::Reduction);
  // for j: out[j] = out[j+1]  -> a loop-carried dependence: scalar
  Stmt shift = loop_stmt(0, c_int(0), c_int(100),
                         {store_stmt(0, var(0), load(0, Scalar::f32, binary(Op::Add, var(0), c_int(1))))});
  CHECK_FALSE(codegen::plan_vector_loop(shift).has_value());
  // for j < 64: out[j] = 1; out[j + 64] = 2  -> disjoint ranges: vectorized
  auto two_stores = [](int64_t distance) {
    return loop_stmt(0, c_int(0), c_int(64), {store_stmt(0, var(0), c_float(1)),
                                              store_stmt(0, binary(Op::Add, var(0), c_int(distance)), c_float(2))});
  };
  CHECK(codegen::plan_vector_loop(two_stores(64)).has_value());
  CHECK(codegen::plan_vector_loop(two_stores(-64)).has_value());
  // out[j + 1] overlaps out[j]'s range: which store lands last depends on the order, scalar
  CHECK_FALSE(codegen::plan_vector_loop(two_stores(1)).has_value());
  CHECK_FALSE(codegen::plan_vector_loop(two_stores(63)).has_value());
  // for j: out[j] = 1; out[2 * j] = 2  -> not a constant distance: scalar
  Stmt scaled = loop_stmt(0, c_int(0), c_int(64), {store_stmt(0, var(0), c_float(1)),
                                                   store_stmt(0, binary(Op::Mul, var(0), c_int(2)), c_float(2))});
  CHECK_FALSE(codegen::plan_vector_loop(scaled).has_value());
}

TEST_CASE("codegen: conv kernels compile to vectors of the host width, and the asm uses them") {
  test::ScopedEnv direct("KILN_NO_WINOGRAD");  // conv2's GEMM over its windows (winograd_test.cpp has the other)
  Graph g = cnn();
  auto p = lower::lower_program(g.name, lower::forward_entries(g), {.max_batch = 8});
  int lanes = codegen::host_target().f32_lanes();
  std::string vec = "<" + std::to_string(lanes) + " x float>";
  std::string ir = codegen::llvm_ir_text(p, "conv2/conv2d");
  CHECK(ir.find(vec) != std::string::npos);
  CHECK(ir.find("define void @k") != std::string::npos);
  CHECK(ir.find("noalias") != std::string::npos);
  CHECK(ir.find("!{!\"conv2\", !\"conv2\"") != std::string::npos);  // the node (the epilogue's: the layer's output) rides along
  // The CLI shows the same for a conv kernel named by its JSON node's kernel
  // (conv2's GEMM over its windows: its micro-kernel's vectors). In predict
  // the gemm comes after the kernel that packs its filter once.
  std::string name = codegen::select_kernels(p, "conv2/conv2d").back()->name;
  auto cli = test::run_kiln("ir graphs/cnn_mnist.json --batch 8 --stage llvm --kernel conv2/conv2d");
  CHECK(cli.exit_code == 0);
  CHECK(cli.output.find(vec) != std::string::npos);
  // Compiled (not run) for an AVX2 and an AVX-512 CPU on any host: each uses its own registers.
  const std::string as256 = codegen::asm_text(p, name, {.target_cpu = "znver3"});
  CHECK(as256.find("ymm") != std::string::npos);
  CHECK(as256.find("zmm") == std::string::npos);
  const std::string as512 = codegen::asm_text(p, name, {.target_cpu = "znver4"});
  CHECK(as512.find("zmm") != std::string::npos);
  auto bad = test::run_kiln("ir graphs/cnn_mnist.json --stage llvm --kernel no_such_kernel");
  CHECK(bad.exit_code == 1);
  CHECK(bad.output.find("no kernel matches 'no_such_kernel'") != std::string::npos);
}

TEST_CASE("codegen: the runtime checks batch sizes and pointer counts, and init fills params") {
  Graph g;
  g.name = "init_test";
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {-1, 3}});
  NodeId w = b.param("w", {DType::f32, {3}}, {{"init", {{"kind", "constant"}, {"value", 0.5}}}});
  NodeId v = b.param("v", {DType::f32, {3}}, {{"init", {{"kind", "normal"}, {"stddev", 1.0}}}});
  g.outputs = {{"y", b.add("add", {b.add("mul", {x, w}), v})}};
  auto cp = codegen::compile_entries(g.name, lower::forward_entries(g), {.max_batch = 4});
  Program prog(cp->info());
  // init: w from its constant initializer, v from the caller.
  const EntryInfo* init = prog.entry("init");
  REQUIRE(init != nullptr);
  REQUIRE(init->inputs.size() == 1);
  CHECK(init->inputs[0].name == "v");
  float v0[3] = {1, 2, 3};
  prog.run("init", 1, {v0}, {});
  const float* wp = static_cast<const float*>(prog.persistent("w"));
  CHECK(wp[0] == 0.5f);
  CHECK(wp[2] == 0.5f);
  float xs[6] = {2, 4, 6, 8, 10, 12}, ys[6] = {};
  prog.run("predict", 2, {xs}, {ys});
  CHECK(ys[0] == 2.0f);   // 2 * 0.5 + 1
  CHECK(ys[5] == 9.0f);   // 12 * 0.5 + 3
  CHECK_THROWS_WITH_AS(prog.run("predict", 5, {xs}, {ys}), doctest::Contains("outside 1..4"), std::runtime_error);
  CHECK_THROWS_WITH_AS(prog.run("predict", 0, {xs}, {ys}), doctest::Contains("outside 1..4"), std::runtime_error);
  CHECK_THROWS_WITH_AS(prog.run("predict", 1, {}, {ys}), doctest::Contains("takes 1 inputs"), std::runtime_error);
  CHECK_THROWS_WITH_AS(prog.run("train_step", 1, {}, {}), doctest::Contains("no entry point 'train_step'"),
                       std::runtime_error);
}

TEST_CASE("codegen: parallel kernels give the same results on a thread pool") {
  Graph g;
  g.name = "parallel_test";
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::f32, {-1, 4099}});
  NodeId w = b.input("w", {DType::f32, {4099, 300}});
  NodeId h = b.add("matmul", {x, w});
  g.outputs = {{"h", h}, {"s", b.add("sigmoid", {x})}, {"r", b.add("reduce_sum", {h}, {{"axes", {1}}})}};
  auto cp = codegen::compile_entries(g.name, {{"eval_step", &g, {"h", "s", "r"}, {}}}, {.max_batch = 128});
  std::vector<float> xs(16 * 4099), ws(4099 * 300);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<float>((i * 7919) % 1000) / 1000.0f - 0.5f;
  for (size_t i = 0; i < ws.size(); ++i) ws[i] = static_cast<float>((i * 104729) % 997) / 997.0f - 0.5f;
  std::vector<float> h1(16 * 300), s1(16 * 4099), r1(16), h2 = h1, s2 = s1, r2 = r1;
  Program serial(cp->info());
  serial.run("eval_step", 13, {xs.data(), ws.data()}, {h1.data(), s1.data(), r1.data()});
  ThreadPool pool(3);
  Program threaded(cp->info(), &pool);
  threaded.run("eval_step", 13, {xs.data(), ws.data()}, {h2.data(), s2.data(), r2.data()});
  // Each output element is computed by one thread in the same order: bit-identical.
  CHECK(h1 == h2);
  CHECK(s1 == s2);
  CHECK(r1 == r2);
  // One row checked against a direct sum in double.
  double want = 0;
  for (int k = 0; k < 4099; ++k) want += static_cast<double>(xs[12 * 4099 + k]) * ws[static_cast<size_t>(k) * 300 + 299];
  CHECK(h2[12 * 300 + 299] == doctest::Approx(want).epsilon(1e-4));
}

TEST_CASE("codegen: kiln compile --stats and --check-numerics") {
  auto run = test::run_kiln("compile graphs/cnn_mnist.json --batch 8 --stats --check-numerics --check-batch 3");
  CHECK(run.exit_code == 0);
  const std::string& out = run.output;
  CHECK(out.find("cold compile:") != std::string::npos);
  CHECK(out.find("kernels:") != std::string::npos);
  CHECK(out.find("arena") != std::string::npos);
  CHECK(out.find("check-numerics eval_step:") != std::string::npos);
  CHECK(out.find("match the interpreter") != std::string::npos);
}

TEST_CASE("codegen: integer division by zero or -1 never traps") {
  Graph g;
  g.name = "int_div";
  GraphBuilder b(g);
  NodeId x = b.input("x", {DType::i32, {4}});
  NodeId y = b.input("y", {DType::i32, {4}});
  g.outputs = {{"q", b.add("div", {x, y})}};
  auto cp = codegen::compile_entries(g.name, {{"eval_step", &g, {"q"}, {}}}, {.max_batch = 1});
  Program prog(cp->info());
  int32_t xs[4] = {7, -7, INT32_MIN, 5}, ys[4] = {2, 2, -1, 0}, q[4] = {};
  prog.run("eval_step", 1, {xs, ys}, {q});
  CHECK(q[0] == 3);          // truncates toward zero
  CHECK(q[1] == -3);
  CHECK(q[2] == INT32_MIN);  // wraps instead of faulting
  CHECK(q[3] == 0);          // a zero divisor gives 0
}

TEST_CASE("codegen: every primitive op has a lowering (sources get buffers instead)") {
  std::vector<std::string> missing;
  for (const OpDef& d : OpRegistry::get().all()) {
    // Ops by mode are replaced by their training or inference form before lowering.
    if (d.composite() || d.by_mode || d.name == "input" || d.name == "param" || d.name == "constant") continue;
    if (!d.lower) missing.push_back(d.name);
  }
  std::string names;
  for (auto& m : missing) names += " " + m;
  INFO("no lowering:" << names);
  CHECK(missing.empty());
  CHECK(OpRegistry::get().find("conv2d")->lower);
}
