// The packed register-blocked GEMM (compiler/codegen/gemm_*.cpp): edge sizes
// around the register tiles lower::plan_gemm chooses (6 rows of 2 vectors,
// one-vector tiles for narrow N, tiles of exactly M rows for small M) and the
// cache blocks (K cut into equal blocks of at most KC, MC rows, NC columns),
// every transpose form, the batch as M and as K, and bit-identical results
// for any thread count; the plans themselves per ISA and shape.
#include <cstring>
#include <regex>
#include <sstream>

#include "compiler/codegen/codegen.h"
#include "compiler/lower/gemm_blocking.h"
#include "compiler/lower/lower_program.h"
#include "tests/unit/codegen_helpers.h"

using namespace kiln;
using namespace kiln::codegen_test;

namespace {
// op(A) [m, k] @ op(B) [k, n] with the stored shapes each transpose form needs.
void add_matmul(JitCase& t, const std::string& name, int64_t m, int64_t k, int64_t n, bool ta, bool tb) {
  NodeId a = t.input(name + "_a", ta ? Shape{k, m} : Shape{m, k});
  NodeId b = t.input(name + "_b", tb ? Shape{n, k} : Shape{k, n});
  t.out(name, t.op("matmul", {a, b}, {{"transpose_a", ta}, {"transpose_b", tb}}));
}
}  // namespace

TEST_CASE("codegen: packed gemm at edge sizes 1, 7, 33, 65, 257 in every transpose form and vector width") {
  // 128, 256 and 512 bits: micro-kernels 6x8, 6x16, 6x32 (4-lane A packing
  // takes the scalar path, 8 and 16 lanes the in-register transpose).
  for (int bits : {128, 256, 512}) {
    INFO("vector bits " << bits);
    JitCase t(3, 4);
    const int64_t shapes[][3] = {{1, 1, 1}, {7, 33, 65}, {65, 7, 33}, {33, 257, 7}, {257, 65, 1}, {1, 257, 33}};
    for (int form = 0; form < 4; ++form)
      for (auto& s : shapes) {
        if (bits != 256 && s[0] * s[1] * s[2] < 7 * 33 * 65) continue;  // the other widths: the larger tiles only
        add_matmul(t, "f" + std::to_string(form) + "_" + std::to_string(s[0]) + "x" + std::to_string(s[1]) + "x" +
                          std::to_string(s[2]),
                   s[0], s[1], s[2], form & 1, form & 2);
      }
    t.check(1e-5, bits);
  }
}

TEST_CASE("codegen: packed gemm across cache blocks: K > KC, N > NC, rows split (M >= 288)") {
  JitCase t(3, 4);
  add_matmul(t, "deep", 13, 600, 40, false, false);       // three KC blocks, the last partial
  add_matmul(t, "wide", 7, 20, 1100, false, true);        // two NC blocks, B^T
  add_matmul(t, "tall", 301, 70, 35, true, false);        // rows split across groups, A^T
  add_matmul(t, "k288", 20, 288, 40, false, false);       // K a little past 256: one block of 288
  add_matmul(t, "k321", 9, 321, 12, false, true);         // past KC's limit: two blocks of 161 + 160
  t.check(1e-5);
}

TEST_CASE("codegen: a matrix times up to three column panels reads A's rows in place, not packed") {
  // Packing A costs a copy and an in-register transpose of every element,
  // paid back only over many B panels: with up to three (a 1x1 convolution
  // into 24 or 96 channels), the micro-kernel broadcasts from A's rows in place.
  // Inspected at 256 and 512 bits on any host, run at the host's width.
  for (int bits : {256, 512}) {
    INFO("vector bits " << bits);
    const int lanes = bits / 32;
    JitCase one(3, 4);
    add_matmul(one, "p", 61, 96, 6 * lanes - 8, false, false);  // three panels of 2 vectors, the third partly used
    lower::Program p = lower::lower_program("in_place", {{"eval_step", &one.g, {"p"}, {}}}, {.max_batch = 4});
    const std::string ir = codegen::llvm_ir_text(p, "", {.vector_bits = bits, .optimize = false});
    CHECK(ir.find("@kiln_gemm_ukr_win_6x2x" + std::to_string(lanes) + "_h1w1c96g96_k1x1") !=
          std::string::npos);
    CHECK(ir.find("@kiln_gemm_pack_a") == std::string::npos);
    JitCase four(3, 4);
    add_matmul(four, "p", 61, 96, 6 * lanes + 1, false, false);  // four panels: packed
    lower::Program q = lower::lower_program("packed", {{"eval_step", &four.g, {"p"}, {}}}, {.max_batch = 4});
    const std::string packed = codegen::llvm_ir_text(q, "", {.vector_bits = bits, .optimize = false});
    CHECK(packed.find("@kiln_gemm_pack_a_6(") != std::string::npos);
    CHECK(packed.find("kiln_gemm_ukr_win_") == std::string::npos);
  }
  // Values: rows past a tile's end, K cut into two blocks, a partial panel, one column.
  JitCase t(3, 4);
  add_matmul(t, "rows", 61, 96, 24, false, false);
  add_matmul(t, "deep", 13, 600, 40, false, true);
  add_matmul(t, "col", 29, 9, 1, false, false);
  t.check(1e-5);
}

TEST_CASE("gemm plans: the register tile follows the ISA and the shape, the scratch holds every plan") {
  // AVX2 (8 lanes, 16 registers) and AVX-512 (16 lanes, 32 registers) at a large shape: 6 rows of 2 vectors.
  lower::GemmPlan avx2 = lower::plan_gemm(8, -1, 1024, 3072), avx512 = lower::plan_gemm(16, -1, 1024, 3072);
  CHECK(avx2.mr == 6);
  CHECK(avx2.nr() == 16);
  CHECK(avx512.mr == 6);
  CHECK(avx512.nr() == 32);
  CHECK(avx512.describe() ==
        "6x32 tile (2 vectors of 16), KC <= 256, MC 72, NC 1024, B prefetched 2048 bytes ahead in a panel's first tile");
  // A matrix one vector wide: one vector a row, more rows (more registers on AVX-512).
  CHECK(lower::plan_gemm(8, -1, 8, 100).nr() == 8);
  CHECK(lower::plan_gemm(8, -1, 8, 100).mr == 8);
  CHECK(lower::plan_gemm(16, -1, 10, 100).nr() == 16);
  CHECK(lower::plan_gemm(16, -1, 10, 100).mr == 12);
  CHECK(lower::plan_gemm(16, -1, 17, 100).nr() == 32);  // 17 columns need two vectors
  CHECK(lower::plan_gemm(16, -1, 8, 100).lanes == 8);    // 8 columns on AVX-512: 8-lane vectors
  CHECK(lower::plan_gemm(16, -1, 8, 100).mr == 8);
  // Fewer rows than the tile: a tile of exactly those rows.
  CHECK(lower::plan_gemm(16, 3, 64, 64).mr == 3);
  CHECK(lower::plan_gemm(8, -1, 64, 64).mr == 6);  // (rows unknown: the batch)
  // A few tiles' worth of rows: equal tiles as tall as the registers allow.
  CHECK(lower::plan_gemm(16, 16, 16, 1000).mr == 16);  // a 16-filter gradient on AVX-512: one tile, not 12 + 4
  CHECK(lower::plan_gemm(16, 49, 512, 4608).mr == 13);  // 4 x 13, not 8 x 6 + 1
  CHECK(lower::plan_gemm(8, 16, 16, 1000).mr == 6);     // AVX2, two vectors a row: 6 is the registers' limit
  CHECK(lower::plan_gemm(16, 100, 64, 64).mr == 6);     // more than four tall tiles: the measured default
  // Depth: one block up to 320 when K is known, else blocks of at most 256.
  CHECK(lower::plan_gemm(16, -1, 64, 288).kc == 288);
  CHECK(lower::plan_gemm(16, -1, 64, 321).kc == 256);
  CHECK(lower::plan_gemm(16, -1, 64, -1).kc == 256);
  // Every plan's MC is a multiple of its MR, NC of its NR, and its slots fit the scratch lowering sized.
  for (int lanes : {4, 8, 16})
    for (int64_t m : {-1, 1, 5, 7, 64, 4096})
      for (int64_t n : {1, 7, 8, 16, 17, 33, 64, 1000, 1025, 4096})
        for (int64_t k : {-1, 1, 256, 257, 320, 321, 4096}) {
          lower::GemmPlan p = lower::plan_gemm(lanes, m, n, k);
          INFO(lanes << " lanes, m " << m << " n " << n << " k " << k << ": " << p.describe());
          CHECK(p.mc % p.mr == 0);
          CHECK(p.nc % p.nr() == 0);
          CHECK(p.nr() <= lower::kGemmMaxNR);
          CHECK(p.kc <= lower::kGemmMaxKC);
          CHECK(p.mc <= lower::kGemmMaxMC);
          CHECK(lower::kGemmSlots * lower::gemm_slot_floats(n, p) <= lower::gemm_scratch_floats(n));
        }
}

TEST_CASE("codegen: packed gemm gives bit-identical results on 1, 2 and 3 threads") {
  // Big enough for the thread pool: one product split by rows (M = 400), one by
  // column panels (M = 64). Each C element must be the same float every time.
  JitCase t(64, 64);
  NodeId x = t.input("x", {-1, 300});
  NodeId w = t.input("w", {300, 1100});
  NodeId tall = t.input("tall", {400, 300});
  t.out("small_m", t.op("matmul", {x, w}));
  t.out("large_m", t.op("matmul", {tall, w}));
  auto cp = codegen::compile_entries("threads", {{"eval_step", &t.g, {"small_m", "large_m"}, {}}}, {.max_batch = 64});
  auto runs = run_on_threads(*cp, "eval_step", 64, t.feeds);
  for (const char* name : {"small_m", "large_m"}) {
    INFO(name);
    const auto& one = runs[0].at(name).data;
    REQUIRE(one.size() == (std::string(name) == "small_m" ? 64u * 1100u : 400u * 1100u));
    // The first element against a sum written out here (double precision).
    const auto& xa = t.feeds.at(std::string(name) == "small_m" ? "x" : "tall").data;
    const auto& wb = t.feeds.at("w").data;
    double c00 = 0;
    for (int k = 0; k < 300; ++k) c00 += xa[static_cast<size_t>(k)] * wb[static_cast<size_t>(k) * 1100];
    CHECK(one[0] == doctest::Approx(c00).epsilon(1e-5));
    for (size_t r = 1; r < runs.size(); ++r) CHECK(runs[r].at(name).data == one);
  }
}

TEST_CASE("codegen: a gemm's threads share its tiles, not whole panels: every tile once, the interpreter's values, 1-5 threads") {
  // Chunks of the eight groups end inside a panel: 49 x 160 splits the
  // columns (4 row panels under 13-row tiles, 5 column panels of 32 on
  // AVX-512), 300 x 72 the rows; 1000 deep cuts K into blocks (C
  // accumulates), 40 deep is one block (the epilogue's block on the stack).
  // A tile computed twice, or by no chunk, shows in the values.
  for (int64_t depth : {int64_t{40}, int64_t{1000}}) {
    INFO("K " << depth);
    JitCase t(1, 3);
    const std::vector<std::pair<int64_t, int64_t>> shapes{{49, 160}, {300, 72}, {13, 70}};
    std::vector<std::string> outs;
    for (const auto& [m, n] : shapes) {
      const std::string name = "c" + std::to_string(m) + "x" + std::to_string(n);
      NodeId a = t.input(name + "_a", {m, depth});
      NodeId b = t.input(name + "_b", {depth, n});
      t.out(name, t.op("relu", {t.op("matmul", {a, b})}));
      t.out(name + "_plain", t.op("matmul", {b, t.input(name + "_d", {n, 9})}));
      outs.push_back(name);
      outs.push_back(name + "_plain");
    }
    const auto got = t.check(1e-5);
    auto cp = codegen::compile_entries("tiles", {{"eval_step", &t.g, outs, {}}}, {.max_batch = 1});
    auto runs = run_on_threads(*cp, "eval_step", 1, t.feeds, {1, 2, 3, 4, 5});
    for (const std::string& name : outs) {
      INFO(name);
      CHECK(runs[0].at(name).data == got.at(name).data);
      for (size_t r = 1; r < runs.size(); ++r) CHECK(runs[r].at(name).data == runs[0].at(name).data);
    }
  }
}

TEST_CASE("codegen: a gemm of few tiles over a deep K cuts K: the interpreter's values, the same bits on 1-3 threads") {
  // A weight gradient's shape: M x N small, K = the batch's rows. At batch
  // 3000 K is cut (kGemmCutKFrom = 1024); at batch 500 it is not. Products
  // through an epilogue (an output copy, relu) and one to C (two consumers).
  for (int64_t batch : {int64_t{3000}, int64_t{500}}) {
    INFO("batch " << batch);
    JitCase t(batch, 3000);
    NodeId a = t.input("a", {-1, 12});
    t.out("plain", t.op("matmul", {a, t.input("b", {-1, 20})}, {{"transpose_a", true}}));
    t.out("relu", t.op("relu", {t.op("matmul", {a, t.input("b2", {-1, 40})}, {{"transpose_a", true}})}));
    NodeId shared = t.op("matmul", {a, t.input("b3", {-1, 9})}, {{"transpose_a", true}});
    t.out("neg", t.op("neg", {shared}));
    t.out("abs", t.op("abs", {shared}));
    // Every gemm may cut K, under the plan of every vector width.
    const std::vector<std::string> outs{"plain", "relu", "neg", "abs"};
    auto program = lower::lower_program("cut_k", {{"eval_step", &t.g, outs, {}}}, {.max_batch = 3000});
    int gemms = 0, epilogues = 0;
    for (const auto& k : program.kernels) {
      if (k.kind != lower::KernelKind::Gemm) continue;
      ++gemms;
      epilogues += !k.body.empty();
      for (int lanes : {4, 8, 16})
        CHECK(lower::gemm_cuts_k(k.gemm, lower::plan_gemm(lanes, k.gemm.m->ival, k.gemm.n->ival, -1)));
    }
    CHECK(gemms == 3);
    CHECK(epilogues == 2);  // the output copy, relu; the shared product goes to C
    const auto got = t.check(1e-5);
    auto cp = codegen::compile_entries("cut_k", {{"eval_step", &t.g, outs, {}}}, {.max_batch = 3000});
    auto runs = run_on_threads(*cp, "eval_step", batch, t.feeds);
    for (const std::string& name : outs) {
      INFO(name);
      CHECK(runs[0].at(name).data == got.at(name).data);
      for (size_t r = 1; r < runs.size(); ++r) CHECK(runs[r].at(name).data == runs[0].at(name).data);
    }
    // C[3][7] against a sum written out here.
    const auto &av = t.feeds.at("a").data, &bv = t.feeds.at("b").data;
    double c37 = 0;
    for (int64_t r = 0; r < batch; ++r)
      c37 += av[static_cast<size_t>(r * 12 + 3)] * bv[static_cast<size_t>(r * 20 + 7)];
    CHECK(got.at("plain").data[3 * 20 + 7] == doctest::Approx(c37).epsilon(1e-5));
  }
}

TEST_CASE("codegen: packed gemm with accumulate adds to what C holds") {
  // No op lowers to an accumulating gemm yet: lower a matmul, flip the flag,
  // and check C = C0 + A @ B against a sum written out here.
  JitCase t(5, 8);
  NodeId a = t.input("a", {-1, 37});
  NodeId b = t.input("b", {70, 37});
  t.out("c", t.op("matmul", {a, b}, {{"transpose_b", true}}));
  auto program = lower::lower_program("acc", {{"eval_step", &t.g, {"c"}, {}}}, {.max_batch = 8});
  int flipped = 0, c_buffer = -1;
  for (auto& k : program.kernels)
    if (k.kind == lower::KernelKind::Gemm) k.gemm.accumulate = true, c_buffer = k.gemm.c, ++flipped;
  REQUIRE(flipped == 1);
  // The gemm writes an arena buffer (an output copy follows): C0 goes there.
  const lower::Buffer& cb = program.buffers.at(static_cast<size_t>(c_buffer));
  REQUIRE(cb.storage == lower::Storage::Arena);
  auto cp = codegen::CompiledProgram::compile(program);
  Program prog(cp->info());
  std::vector<float> av(t.feeds.at("a").data.begin(), t.feeds.at("a").data.end());
  std::vector<float> bv(t.feeds.at("b").data.begin(), t.feeds.at("b").data.end());
  std::vector<float> c(5 * 70);
  for (size_t i = 0; i < c.size(); ++i) c[i] = static_cast<float>(i % 7) - 3.0f;
  std::vector<float> c0 = c;
  std::memcpy(prog.arena() + cb.offset, c0.data(), c0.size() * sizeof(float));
  prog.run("eval_step", 5, {av.data(), bv.data()}, {c.data()});
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 70; ++j) {
      double want = c0[static_cast<size_t>(i * 70 + j)];
      for (int k = 0; k < 37; ++k) want += double(av[static_cast<size_t>(i * 37 + k)]) * bv[static_cast<size_t>(j * 37 + k)];
      INFO("c[" << i << "," << j << "]");
      CHECK(c[static_cast<size_t>(i * 70 + j)] == doctest::Approx(want).epsilon(1e-5));
    }
}

TEST_CASE("codegen: the GEMM helpers are built once, in a module of their own, with the helpers' pipeline, and kernels import them") {
  // Two gemms with A as stored, two with A^T (packed, and read in place): the JIT's kernel modules
  // declare the micro-kernel and packers; build_gemm_helpers defines each
  // exactly once, exported. Built for 256 and 512 bits on any host (only
  // inspected): the names say the register tile each width must use.
  struct Width {
    int bits;
    std::vector<std::string> helpers;
    std::string ukr;
  };
  const Width widths[] = {
      {256,
       {"kiln_gemm_pack_a_6", "kiln_gemm_pack_a_t_6", "kiln_gemm_pack_b_16", "kiln_gemm_ukr_6x16", "kiln_gemm_ukr_6x16_pfb512",
        "kiln_gemm_ukr_at_6x16"},
       "kiln_gemm_ukr_6x16"},
      {512,
       {"kiln_gemm_pack_a_6", "kiln_gemm_pack_a_t_6", "kiln_gemm_pack_b_32", "kiln_gemm_ukr_6x32", "kiln_gemm_ukr_6x32_pfb512",
        "kiln_gemm_ukr_at_6x32"},
       "kiln_gemm_ukr_6x32"},
  };
  for (const Width& width : widths) {
    INFO("vector bits " << width.bits);
    JitCase t(3, 4);
    // (more rows than four tall tiles and 33 columns: the default 6 x 2-vector tile on both widths)
    add_matmul(t, "p", 61, 7, 40, false, false);
    // (B of four panels or more at both widths: A is packed, not read in place)
    add_matmul(t, "q", 62, 8, 130, false, false);
    add_matmul(t, "r", 62, 8, 130, true, false);
    // (A^T times three column panels or fewer: A^T read in place, not packed)
    add_matmul(t, "s", 62, 8, 41, true, false);
    lower::Program p = lower::lower_program("helpers", {{"eval_step", &t.g, {"p", "q", "r", "s"}, {}}}, {.max_batch = 4});
    codegen::CodegenOptions opts{.vector_bits = width.bits, .optimize = false, .gemm_helpers_imported = true};
    codegen::BuiltModule kernels = codegen::build_module(p, opts, nullptr, false);
    codegen::BuiltModule helpers = codegen::build_gemm_helpers(p, opts);
    const bool built = helpers.module != nullptr;
    REQUIRE(built);
    const std::string k = codegen::module_text(*kernels.module), h = codegen::module_text(*helpers.module);
    // The module flag optimize_module reads: 1 = the kernels' pipeline, 2 = the GEMM helpers'.
    auto pipeline = [](const std::string& text) {
      std::smatch m;
      return std::regex_search(text, m, std::regex(R"(!"kiln\.pipeline", i32 (\d+)\})")) ? std::stoi(m[1].str()) : -1;
    };
    CHECK(pipeline(k) == 1);
    CHECK(pipeline(h) == 2);
    std::vector<std::string> defined;
    const std::regex define(R"(\ndefine (\w+ )*void @(kiln_gemm_\w+)\()");
    for (auto it = std::sregex_iterator(h.begin(), h.end(), define); it != std::sregex_iterator(); ++it)
      defined.push_back((*it)[2].str());
    std::sort(defined.begin(), defined.end());
    CHECK(defined == width.helpers);
    CHECK(h.find("define internal") == std::string::npos);  // exported: the kernel modules link to them
    for (const std::string& name : defined) {
      INFO(name);
      CHECK(k.find("declare void @" + name + "(") != std::string::npos);
      CHECK(k.find("@" + name + "(") != std::string::npos);
      CHECK(k.find("define internal void @" + name + "(") == std::string::npos);
    }
    // One module holding everything (the default): the helpers are its own, internal, and it gets their pipeline.
    codegen::BuiltModule whole = codegen::build_module(p, {.vector_bits = width.bits, .optimize = false}, nullptr, false);
    const std::string w = codegen::module_text(*whole.module);
    CHECK(pipeline(w) == 2);
    CHECK(w.find("define internal void @" + width.ukr + "(") != std::string::npos);
    // No packed gemm, no helper module.
    JitCase none(3, 4);
    none.out("y", none.op("relu", {none.input("x", {-1, 5})}));
    lower::Program q = lower::lower_program("none", {{"eval_step", &none.g, {"y"}, {}}}, {.max_batch = 4});
    const bool built_none = codegen::build_gemm_helpers(q, opts).module != nullptr;
    CHECK_FALSE(built_none);
  }
}

TEST_CASE("codegen: a B panel's first tile prefetches it ahead, the block's other tiles (in L1) do not") {
  // The first tile reads the panel from L2 or memory (prepacked weights; a
  // GEMV has no other tile). Compiled for an AVX2 and an AVX-512 CPU on any
  // host: the streaming micro-kernel prefetches every cache line of a B row
  // 2 KB ahead in its K loop, the plain one never prefetches there; a product
  // of one known tile of rows has only the streaming one.
  for (const char* cpu : {"znver3", "znver4"}) {
    INFO("target cpu " << std::string(cpu));
    const int nr = std::string(cpu) == "znver4" ? 32 : 16;
    const std::string plain = "kiln_gemm_ukr_6x" + std::to_string(nr), streaming = plain + "_pfb512";
    auto body = [](const std::string& as, const std::string& name) {
      const size_t begin = as.find("\n" + name + ":");
      return begin == std::string::npos ? std::string() : as.substr(begin, as.find(".Lfunc_end", begin) - begin);
    };
    auto count = [](const std::string& text, const std::string& what) {
      size_t n = 0;
      for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
      return n;
    };
    JitCase t(3, 4);
    add_matmul(t, "p", 61, 40, 130, false, false);  // 11 tiles of rows, B of four panels or more (packed)
    lower::Program p = lower::lower_program("stream", {{"eval_step", &t.g, {"p"}, {}}}, {.max_batch = 4});
    const std::string as = codegen::asm_text(p, "", {.target_cpu = cpu});
    const std::string s = body(as, streaming), u = body(as, plain);
    REQUIRE_FALSE(s.empty());
    REQUIRE_FALSE(u.empty());
    // The K loop unrolled 4 times and its remainder: 5 x NR / 16 cache lines, each 2048 bytes past its row.
    CHECK(count(s, "prefetcht0") == static_cast<size_t>(5 * nr / 16));
    CHECK(s.find("prefetcht0\t2048(") != std::string::npos);
    CHECK(count(u, "prefetcht0") == 0);
    JitCase one(3, 4);
    add_matmul(one, "q", 3, 40, 300, false, false);  // one tile of 3 rows
    lower::Program q = lower::lower_program("stream1", {{"eval_step", &one.g, {"q"}, {}}}, {.max_batch = 4});
    const std::string as1 = codegen::asm_text(q, "", {.target_cpu = cpu});
    const std::string tile3 = "kiln_gemm_ukr_3x" + std::to_string(nr);
    CHECK_FALSE(body(as1, tile3 + "_pfb512").empty());
    CHECK(body(as1, tile3).empty());
  }
}

TEST_CASE("codegen: kiln's loops carry unroll hints, and the micro-kernel keeps its unroll count") {
  // A vector loop and its scalar tail may unroll only for constant trip
  // counts; the GEMM's own loops never; the micro-kernel's K loop asks for 4.
  JitCase t(3, 4);
  add_matmul(t, "p", 5, 7, 9, false, false);
  t.out("y", t.op("relu", {t.input("x", {-1, 37})}));
  lower::Program p = lower::lower_program("hints", {{"eval_step", &t.g, {"p", "y"}, {}}}, {.max_batch = 4});
  const std::string ir = codegen::llvm_ir_text(p, "", {.optimize = false});  // as emitted
  CHECK(ir.find("!\"llvm.loop.unroll.runtime.disable\"") != std::string::npos);
  CHECK(ir.find("!\"llvm.loop.unroll.disable\"") != std::string::npos);
  CHECK(ir.find("!\"llvm.loop.unroll.count\", i32 4") != std::string::npos);
}

TEST_CASE("codegen: the micro-kernel's K loop walks its panels by pointer increments, with no multiplies") {
  // kiln's codegen leaves out LLVM's loop strength reduction (host.cpp): the
  // K loop must address its panels from bumped pointers by itself. Every
  // block of the micro-kernel that does FMAs (the unrolled loop and its
  // remainder) computes no address by multiplying or shifting. Compiled (not
  // run) for an AVX2 and an AVX-512 CPU on any host.
  for (const char* cpu : {"znver3", "znver4"}) {
    INFO("target cpu " << cpu);
    JitCase t(3, 4);
    add_matmul(t, "p", 5, 7, 9, false, false);
    lower::Program p = lower::lower_program("walk", {{"eval_step", &t.g, {"p"}, {}}}, {.max_batch = 4});
    const std::string as = codegen::asm_text(p, "", {.target_cpu = cpu});  // every kernel, and the GEMM helpers
    const size_t begin = as.find("\nkiln_gemm_ukr_");
    REQUIRE(begin != std::string::npos);
    const std::string ukr = as.substr(begin, as.find(".Lfunc_end", begin) - begin);
    // The accumulators are the target's widest registers.
    CHECK(ukr.find(std::string(cpu) == "znver4" ? "zmm" : "ymm") != std::string::npos);
    if (std::string(cpu) == "znver3") CHECK(ukr.find("zmm") == std::string::npos);
    int fma_blocks = 0;
    std::istringstream lines(ukr);
    std::string line, block;
    auto check_block = [&] {
      if (block.find("fmadd") == std::string::npos && block.find("mulps") == std::string::npos) return;
      ++fma_blocks;
      INFO(block);
      CHECK(block.find("imul") == std::string::npos);
      CHECK(block.find("shl") == std::string::npos);
    };
    while (std::getline(lines, line)) {
      if (!line.empty() && line[0] == '.' && line.back() == ':') {  // a new basic block
        check_block();
        block.clear();
      }
      block += line + "\n";
    }
    check_block();
    CHECK(fma_blocks >= 2);  // the unrolled K loop and its remainder
  }
}
