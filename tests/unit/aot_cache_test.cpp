// Ahead-of-time compilation and the compile cache (issue #8): the AOT example
// (tools/aot_example, linked with kiln_runtime only) trains bit for bit like
// the JIT; a second compile is a cache hit that skips codegen and computes the
// same bits; a damaged cache entry is reported, rebuilt and never loaded;
// --target-cpu writes code for a CPU this machine may lack.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "compiler/codegen/compile_cache.h"
#include "compiler/codegen/host.h"
#include "compiler/codegen/jit.h"
#include "compiler/codegen/programs.h"
#include "compiler/driver/training_setup.h"
#include "compiler/frontend/graph_json.h"
#include "runtime/data/batcher.h"
#include "runtime/data/cifar.h"
#include "runtime/data/preprocess.h"
#include "runtime/file_io.h"
#include "tests/unit/data_fixtures.h"
#include "tests/unit/test_util.h"

using namespace kiln;

namespace {

// A small model (compiles in well under a second): a dense layer, softmax, MSE.
const char* kTinyGraph = R"({
  "format": "kiln.graph/1", "name": "tiny", "seed": 3,
  "inputs": {"x": {"shape": [-1, 16]}, "t": {"shape": [-1, 4]}},
  "params": {"w": {"shape": [16, 4], "init": "he_normal"}, "b": {"shape": [4], "init": "zeros"}},
  "nodes": [
    {"name": "z", "op": "matmul", "inputs": ["x", "w"]},
    {"name": "y", "op": "add", "inputs": ["z", "b"]},
    {"name": "p", "op": "softmax", "inputs": ["y"]},
    {"name": "loss", "op": "mse", "inputs": ["p", "t"]}
  ],
  "outputs": {"probabilities": "p", "loss": "loss"}
})";

std::string write_tiny_graph(const test::TempDir& dir) {
  std::string path = dir / "tiny.json";
  std::ofstream(path) << kTinyGraph;
  return path;
}

// `kiln ARGS` with KILN_CACHE_DIR set to `cache`.
test::CommandResult kiln_with_cache(const std::string& cache, const std::string& args) {
  return test::run_command("KILN_CACHE_DIR='" + cache + "' '" + KILN_BINARY + "' " + args);
}

// The predict output of a freshly compiled tiny program for a fixed input, as raw bits.
std::vector<uint32_t> tiny_predict_bits(const codegen::CompiledProgram& cp, const Graph& model) {
  Program prog(cp.info());
  auto params = interp::init_params(model, 7);
  std::map<std::string, interp::Value> feeds(params.begin(), params.end());
  interp::Value x{DType::f32, {3, 16}, {}};
  for (int i = 0; i < 48; ++i) x.data.push_back(0.25 * (i % 7) - 0.5);
  feeds["x"] = x;
  auto out = codegen::run_entry(prog, "predict", 3, feeds);
  std::vector<uint32_t> bits;
  for (double v : out.at("probabilities").data) {
    float f = static_cast<float>(v);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    bits.push_back(u);
  }
  return bits;
}

void flip_byte(const std::string& path, size_t at) {
  auto bytes = read_file_bytes(path);
  REQUIRE(at < bytes.size());
  bytes[at] ^= 0x5a;
  test::write_bytes(path, bytes);
}

std::vector<std::string> cache_files(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().string());
  return out;
}

}  // namespace

TEST_CASE("compile cache: the second compile is a hit, skips codegen and computes the same bits") {
  test::TempDir dir;
  Graph model = parse_graph(kTinyGraph);
  auto graphs = codegen::program_graphs(model, nullptr);
  codegen::CodegenOptions copts;
  copts.cache_dir = dir / "cache";

  auto first = codegen::compile_entries("tiny", graphs->entries(), {.max_batch = 4}, copts);
  CHECK_FALSE(first->stats().cache_hit);
  CHECK(first->stats().emit_ms > 0);
  REQUIRE(std::filesystem::exists(first->stats().cache_entry));
  CHECK(cache_files(copts.cache_dir).size() == 1);

  auto second = codegen::compile_entries("tiny", graphs->entries(), {.max_batch = 4}, copts);
  CHECK(second->stats().cache_hit);
  CHECK(second->stats().emit_ms < 1.0);  // no LLVM IR was built
  CHECK(second->stats().optimize_cpu_ms == 0);
  CHECK(second->stats().cache_entry == first->stats().cache_entry);
  auto a = tiny_predict_bits(*first, graphs->model), b = tiny_predict_bits(*second, graphs->model);
  REQUIRE(a.size() == 12);
  CHECK(a == b);

  // Another max batch is another program: a miss with its own entry.
  auto other = codegen::compile_entries("tiny", graphs->entries(), {.max_batch = 8}, copts);
  CHECK_FALSE(other->stats().cache_hit);
  CHECK(cache_files(copts.cache_dir).size() == 2);
  // Without a cache folder nothing is read or written.
  auto uncached = codegen::compile_entries("tiny", graphs->entries(), {.max_batch = 4}, {});
  CHECK_FALSE(uncached->stats().cache_hit);
  CHECK(uncached->stats().cache_entry.empty());
}

TEST_CASE("compile cache: a damaged entry is reported, deleted and rebuilt, never loaded") {
  test::TempDir dir;
  const std::string graph = write_tiny_graph(dir), cache = dir / "cache";
  const std::string cmd = "compile '" + graph + "' --batch 4 --stats";
  auto r1 = kiln_with_cache(cache, cmd);
  REQUIRE(r1.exit_code == 0);
  CHECK(r1.output.find("cache: miss, stored " + cache + "/") != std::string::npos);
  auto r2 = kiln_with_cache(cache, cmd);
  CHECK(r2.output.find("cache: hit (codegen skipped)") != std::string::npos);
  auto files = cache_files(cache);
  REQUIRE(files.size() == 1);
  const std::string entry = files[0];

  // One flipped byte in the middle of the object code.
  flip_byte(entry, std::filesystem::file_size(entry) / 2);
  auto r3 = kiln_with_cache(cache, cmd);
  CHECK(r3.exit_code == 0);
  CHECK(r3.output.find("cache entry " + entry + " is corrupt (checksum mismatch); rebuilding") != std::string::npos);
  CHECK(r3.output.find("cache: miss, stored " + entry) != std::string::npos);
  CHECK(kiln_with_cache(cache, cmd).output.find("cache: hit") != std::string::npos);

  // Truncated (a crash mid-copy, a full disk): the same.
  std::filesystem::resize_file(entry, 40);
  auto r4 = kiln_with_cache(cache, cmd);
  CHECK(r4.output.find("is corrupt (bad header (40 bytes)); rebuilding") != std::string::npos);
  CHECK(r4.output.find("cache: miss") != std::string::npos);
  CHECK(kiln_with_cache(cache, cmd).output.find("cache: hit") != std::string::npos);

  // --no-cache neither reads nor writes.
  auto r5 = kiln_with_cache(cache, cmd + " --no-cache");
  CHECK(r5.output.find("cache: off") != std::string::npos);
}

TEST_CASE("aot: --target-cpu skylake-avx512 writes AVX-512 code, objects need only libc and libm") {
  test::TempDir dir;
  const std::string graph = write_tiny_graph(dir);
  auto r = test::run_kiln("compile '" + graph + "' --batch 8 --no-cache -o '" + dir.path +
                          "/avx512' --prefix tiny --target-cpu skylake-avx512");
  REQUIRE(r.exit_code == 0);
  CHECK(r.output.find("tiny.o") != std::string::npos);
  CHECK(r.output.find("for skylake-avx512 (512-bit vectors)") != std::string::npos);
  const std::string objdump = "/usr/lib/llvm-19/bin/llvm-objdump";
  auto dis = test::run_command(objdump + " -d '" + dir.path + "/avx512/tiny.o'");
  REQUIRE(dis.exit_code == 0);
  size_t zmm = 0;
  for (size_t at = dis.output.find("zmm"); at != std::string::npos; at = dis.output.find("zmm", at + 1)) ++zmm;
  MESSAGE("skylake-avx512 object: " << zmm << " zmm operands");
  CHECK(zmm >= 10);

  // The host's object: the exported symbols, nothing undefined but libc/libm.
  auto host = test::run_kiln("compile '" + graph + "' --batch 8 --no-cache -o '" + dir.path + "/host' --prefix tiny");
  REQUIRE(host.exit_code == 0);
  auto defined = test::run_command("nm -g --defined-only '" + dir.path + "/host/tiny.o'");
  for (const char* sym : {"tiny_init", "tiny_predict", "tiny_eval_step", "tiny_program"})
    CHECK(defined.output.find(std::string(" T ") + sym + "\n") != std::string::npos);
  CHECK(defined.output.find("k0_") == std::string::npos);  // kernels stay internal
  auto undefined = test::run_command("nm -u '" + dir.path + "/host/tiny.o'");
  std::set<std::string> allowed = {"expf", "logf", "exp", "log", "memcpy", "memset", "memmove", "tanhf", "powf", "sqrtf"};
  std::istringstream lines(undefined.output);
  for (std::string kind, sym; lines >> kind >> sym;) CHECK_MESSAGE(allowed.count(sym), "undefined symbol " << sym);
  if (codegen::host_target().vector_bits < 512) {
    auto host_dis = test::run_command(objdump + " -d '" + dir.path + "/host/tiny.o'");
    CHECK(host_dis.output.find("zmm") == std::string::npos);
  }
  auto header = read_file_bytes(dir.path + "/host/tiny.h");
  std::string h(header.begin(), header.end());
  CHECK(h.find("int32_t tiny_predict(struct kiln_context* ctx, const void* const* inputs, void* const* outputs);") !=
        std::string::npos);
  CHECK(h.find("#define TINY_MAX_BATCH 8") != std::string::npos);

  auto bad = test::run_kiln("compile '" + graph + "' --no-cache -o '" + dir.path + "/x' --target-cpu nosuchcpu");
  CHECK(bad.exit_code != 0);
  CHECK(bad.output.find("unknown target CPU 'nosuchcpu'") != std::string::npos);
  auto jit_other = test::run_kiln("compile '" + graph + "' --no-cache --target-cpu skylake-avx512");
  if (codegen::host_target().cpu != "skylake-avx512") {
    CHECK(jit_other.exit_code != 0);
    CHECK(jit_other.output.find("--target-cpu skylake-avx512 needs -o DIR") != std::string::npos);
  }
}

TEST_SUITE("e2e") {
TEST_CASE("aot: the AOT example's first 5 losses equal the JIT's bit for bit") {
  const std::string data_dir = test::source_path("data/cifar10");
  const std::string batch_file = data_dir + "/cifar-10-batches-bin/data_batch_1.bin";
  if (!file_exists(batch_file)) {
    MESSAGE("skipped: no " << batch_file << " (run `kiln data prepare --from ../shared/data`)");
    return;
  }
  auto aot = test::run_command(std::string("'") + KILN_AOT_EXAMPLE + "' '" + data_dir + "' 5 2");
  REQUIRE_MESSAGE(aot.exit_code == 0, aot.output);
  std::regex step_line("step [0-9]+ loss [^\n]+");
  std::string aot_losses;
  for (std::sregex_iterator it(aot.output.begin(), aot.output.end(), step_line), end; it != end; ++it)
    aot_losses += it->str() + "\n";

  // The JIT: the same graph, spec, initialization (the spec's seed), batches and threads.
  TrainSpec spec = load_train_spec(test::source_path("graphs/experiments/e2_mlp_autodiff_b64.json"));
  driver::CompiledModel m = driver::compile_model(load_graph(spec.graph), &spec, spec.batch_size, 2);
  driver::initialize(m, spec);
  data::LabeledImages raw = data::load_cifar10_batch(batch_file);
  data::Dataset d = data::Dataset::make(data::per_image_standardize(raw.images), data::one_hot(raw.labels, 10));
  data::Batcher batcher(d, {.batch_size = spec.batch_size, .shuffle = true, .seed = 1, .prefetch = false});
  const EntryInfo* step = m.program->entry("train_step");
  const float lr = static_cast<float>(spec.optimizer.lr);
  std::string jit_losses;
  for (int s = 1; s <= 5; ++s) {
    auto batch = batcher.next();
    std::vector<const void*> in;
    for (const TensorInfo& t : step->inputs)
      in.push_back(t.name == "x" ? batch->features().raw() : t.name == "lr" ? static_cast<const void*>(&lr) : batch->labels().raw());
    float loss = 0;
    alignas(8) unsigned char other[64];
    std::vector<void*> out;
    for (const TensorInfo& t : step->outputs) out.push_back(t.name == "loss" ? static_cast<void*>(&loss) : other);
    m.program->run("train_step", batch->size(), in, out);
    char line[64];
    std::snprintf(line, sizeof line, "step %d loss %.9g\n", s, static_cast<double>(loss));
    jit_losses += line;
  }
  MESSAGE("JIT:\n" << jit_losses << "AOT:\n" << aot_losses);
  CHECK(std::count(aot_losses.begin(), aot_losses.end(), '\n') == 5);
  CHECK(aot_losses == jit_losses);
}
}
