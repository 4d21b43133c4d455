// Fusion (compiler/lower/fusion.cpp): the MLP training step lowers to fewer
// kernels than it has primitives, the bias add + relu after the first matmul
// share one pass, the optimizer update of a weight matrix is one in-place pass,
// and every decision is explained (what `kiln ir --stage loops --why` prints).
// The compiled results themselves are checked against the interpreter by the
// codegen_*_test.cpp differential tests, which run fused programs.
#include <doctest/doctest.h>

#include <algorithm>

#include "compiler/autodiff/train_step.h"
#include "compiler/codegen/programs.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/frontend/train_spec.h"
#include "compiler/lower/fusion.h"
#include "compiler/lower/lower_program.h"

using namespace kiln;

namespace {

// Kernels of the MLP's train_step entry (GD, batch 64), one per node vs fused.
// Unfused, the memory plan already writes the 5 updates in place (60 - 5
// copies), and the 4 reshapes of the loss and its gradient are views (no kernel).
constexpr size_t kMlpStepUnfused = 51, kMlpStepFused = 25;

std::string source(const std::string& rel) { return std::string(KILN_SOURCE_DIR) + "/" + rel; }

// The programs of a graph trained by a spec (paths from the source tree).
std::unique_ptr<const codegen::ProgramGraphs> train_graphs(const std::string& graph, const std::string& spec_file) {
  Graph g = load_graph(source(graph));
  TrainSpec spec = expand_sweeps(load_train_spec(source(spec_file))).front();
  apply_train_spec(g, spec);
  TrainStepConfig config = train_step_config(spec);
  return codegen::program_graphs(std::move(g), &config);
}

std::unique_ptr<const codegen::ProgramGraphs> mlp_graphs() {
  return train_graphs("graphs/mlp_cifar10.json", "graphs/experiments/e2_mlp_autodiff_b64.json");
}

std::vector<const lower::Kernel*> entry_kernels(const lower::Program& p, const std::string& entry) {
  std::vector<const lower::Kernel*> ks;
  for (int k : p.entry(entry)->kernels) ks.push_back(&p.kernels[static_cast<size_t>(k)]);
  return ks;
}

bool any_line(const std::vector<std::string>& lines, const std::string& a, const std::string& b = "") {
  return std::any_of(lines.begin(), lines.end(), [&](const std::string& l) {
    return l.find(a) != std::string::npos && l.find(b) != std::string::npos;
  });
}

}  // namespace

TEST_CASE("fusion: the MLP training step has fewer kernels than primitives") {
  auto graphs = mlp_graphs();
  auto entries = graphs->entries();
  lower::Program unfused = lower::lower_program("mlp", entries, {.max_batch = 64, .fuse = false});
  lower::Program fused = lower::lower_program("mlp", entries, {.max_batch = 64, .fuse = true});
  auto before = entry_kernels(unfused, "train_step"), after = entry_kernels(fused, "train_step");
  MESSAGE("train_step kernels: " << before.size() << " unfused, " << after.size() << " fused; whole program "
                                 << unfused.kernels.size() << " -> " << fused.kernels.size());
  CHECK(before.size() == kMlpStepUnfused);
  CHECK(after.size() == kMlpStepFused);
  CHECK(fused.kernels.size() < unfused.kernels.size());
  CHECK(fused.arena_bytes < unfused.arena_bytes);  // internal values get no buffer

  // After the first matmul (h = x @ w1): no standalone bias-add or relu
  // kernel; one kernel computes both, storing only what the backward needs.
  const Graph& step = *graphs->train_step;
  for (const lower::Kernel* k : after) {
    CHECK_MESSAGE(k->node != "hb", k->name);
    CHECK_MESSAGE(!(k->kind == lower::KernelKind::Loops && k->comment.find("fused") == std::string::npos &&
                    (k->node == "hb" || k->node == "a")),
                  k->name);
  }
  // Both run as the epilogue of that gemm, on each block of its product.
  auto gemm_h = std::find_if(after.begin(), after.end(), [](const lower::Kernel* k) {
    return k->kind == lower::KernelKind::Gemm && k->name.ends_with("_h") && !k->body.empty();
  });
  REQUIRE(gemm_h != after.end());
  INFO((*gemm_h)->comment);
  CHECK((*gemm_h)->comment.find("epilogue per block: fused: %hb") != std::string::npos);
  CHECK((*gemm_h)->comment.find("maximum") != std::string::npos);
  (void)step;

  // The GD update of w1 stores into w1 in the kernel that computes it: no copy after the step
  // (fused: the update value never gets a buffer of its own; the entry lists no update).
  for (const lower::Kernel* k : after) CHECK_MESSAGE(k->node != "update_w1", k->name);
  CHECK(fused.entry("train_step")->updates.empty());
  CHECK(unfused.entry("train_step")->updates.size() == 5);
}

TEST_CASE("fusion: every decision has a reason (kiln ir --stage loops --why)") {
  auto graphs = mlp_graphs();
  std::vector<std::string> why, why_off;
  lower::lower_program("mlp", graphs->entries(), {.max_batch = 64, .why = &why});
  CHECK(any_line(why, "matmul epilogue: %hb"));
  CHECK(any_line(why, "fused ", "%hb"));
  CHECK(any_line(why, "in place: ", "%w1"));
  CHECK(any_line(why, "not fused: ", "is not elementwise"));
  std::string text = lower::print_fusion_why(why);
  CHECK(text.rfind("// why: ", 0) == 0);

  lower::lower_program("mlp", graphs->entries(), {.max_batch = 64, .fuse = false, .why = &why_off});
  CHECK(why_off.empty());
}

// Batch norm's training form: x - mean is stored (the backward pass reads
// it), its square only feeds the variance's sum. The sum computes the square
// inline from the stored difference, so the square is never written; the
// same in the backward pass, where a negated product feeds only a sum.
TEST_CASE("fusion: a reduction computes a group's tail inline when the group's head is stored for other readers") {
  auto graphs = train_graphs("graphs/zoo/resnet20.json", "graphs/zoo/train/resnet20.json");
  std::vector<std::string> why;
  lower::Program p = lower::lower_program("resnet20", graphs->entries(), {.max_batch = 8, .why = &why});
  auto stored = [&](const std::string& name) {
    return std::any_of(p.buffers.begin(), p.buffers.end(), [&](const lower::Buffer& b) { return b.name == name; });
  };
  CHECK(stored("s1b1_conv1_bn/batch_norm/sub"));
  CHECK_FALSE(stored("s1b1_conv1_bn/batch_norm/square"));
  CHECK_FALSE(stored("grad/s1b1_conv1_bn/batch_norm/sub_1/neg"));
  auto kernel_of = [&](const std::string& node) -> const lower::Kernel* {
    for (const lower::Kernel& k : p.kernels)
      if (k.node == node) return &k;
    return nullptr;
  };
  const lower::Kernel* variance = kernel_of("s1b1_conv1_bn/batch_norm/reduce_mean_1/reduce_sum");
  REQUIRE(variance);
  CHECK(variance->comment.find("square elementwise, computed inline") != std::string::npos);
  CHECK(any_line(why, "computed inline: %s1b1_conv1_bn/batch_norm/square computed inside"));
}

TEST_CASE("programs: predict and eval_step share the training graph's forward kernels, except with a pre stage") {
  auto graphs = mlp_graphs();
  auto entries = graphs->entries();
  for (const lower::EntrySpec& e : entries) CHECK_MESSAGE(e.graph == &*graphs->train_step, e.name);
  lower::Program p = lower::lower_program("mlp", entries, {.max_batch = 64});
  const lower::Entry *eval = p.entry("eval_step"), *train = p.entry("train_step");
  REQUIRE(eval != nullptr);
  REQUIRE(train != nullptr);
  // Both gemms of the forward pass are compiled once.
  int shared_gemms = 0;
  for (int k : eval->kernels)
    shared_gemms += p.kernels[static_cast<size_t>(k)].kind == lower::KernelKind::Gemm &&
                    std::count(train->kernels.begin(), train->kernels.end(), k) == 1;
  CHECK(shared_gemms == 2);
  // E3's rule moves the params before the loss (a pre stage): evaluation must
  // see the params themselves, so it keeps the model's own graph.
  Graph g = load_graph(source("graphs/mlp_cifar10.json"));
  TrainSpec spec = expand_sweeps(load_train_spec(source("graphs/experiments/e3_interp_alpha.json"))).front();
  apply_train_spec(g, spec);
  TrainStepConfig config = train_step_config(spec);
  auto e3 = codegen::program_graphs(std::move(g), &config);
  for (const lower::EntrySpec& e : e3->entries())
    CHECK_MESSAGE(e.graph == (e.name == "train_step" ? &*e3->train_step : &e3->model), e.name);
}

// GELU's training form: x / sqrt(2), x / 2 and erf(x / sqrt(2)) each feed
// the forward pass and the backward one. The recompute pass copies them into
// their backward readers (the chain to 1 + erf, 23 lane ops, fits the budget), so the
// step stores x alone where it stored both scaled copies and erf.
TEST_CASE("fusion: a training step stores GELU's input, not its scaled copies or erf (recompute)") {
  auto graphs = train_graphs("graphs/zoo/char_gpt.json", "graphs/zoo/train/char_gpt.json");
  lower::Program p = lower::lower_program("char_gpt", graphs->entries(), {.max_batch = 2});
  auto stored = [&](const std::string& name) {
    return std::any_of(p.buffers.begin(), p.buffers.end(), [&](const lower::Buffer& b) { return b.name == name; });
  };
  for (const char* block : {"block1", "block4"}) {
    const std::string up = std::string(block) + "_mlp_up";
    INFO(up);
    CHECK(stored(up + "/add"));  // x: the matmul's epilogue stores it
    // erf is still computed, by copies in its readers (recompute names them /again<n>).
    CHECK(std::any_of(graphs->train_step->nodes.begin(), graphs->train_step->nodes.end(),
                      [&](const Node& n) { return n.op == "erf" && n.name.rfind(up + "/gelu/erf/again", 0) == 0; }));
    CHECK_FALSE(stored(up + "/gelu/erf"));
    CHECK_FALSE(stored(up + "/gelu/mul"));
    CHECK_FALSE(stored(up + "/gelu/mul_1"));
  }
}
