// The model zoo (graphs/zoo, written by tools/gen_zoo.py) and block_tour (every
// layer of issue 22 in one small model): they load, their param counts are
// the published ones, the compiled training and inference forms match the
// interpreter kernel by kernel, and autodiff of the training form matches
// finite differences.
#include <doctest/doctest.h>

#include <fstream>

#include "test_util.h"

using kiln::test::run_command;
using kiln::test::run_kiln;
using kiln::test::source_path;

namespace {

// A training spec for `kiln compile --train` (its optimizer is what the step compiles).
std::string adam_spec(const std::string& graph) {
  const std::string path = "/tmp/kiln_zoo_test_spec.json";
  std::ofstream(path) << R"({"format": "kiln.train/1", "name": "zoo_test", "graph": ")" << source_path(graph) << R"(",
    "data": {"set": "cifar10", "dir": "unused"}, "preprocessing": {"images": "scale255", "labels": "sparse"},
    "batch_size": 4, "epochs": 1, "optimizer": {"kind": "adam", "lr": 0.001}, "seed": 1})";
  return path;
}

}  // namespace

TEST_CASE("zoo: the committed graphs are what tools/gen_zoo.py writes, and each one loads") {
  auto gen = run_command("cd '" + std::string(KILN_SOURCE_DIR) + "' && python3 tools/gen_zoo.py --check 2>&1");
  INFO(gen.output);
  CHECK(gen.exit_code == 0);
  for (const char* model : {"lenet5", "resnet20", "mobilenet_small", "char_gpt"}) {
    auto check = run_kiln(std::string("check graphs/zoo/") + model + ".json 2>&1");
    INFO(check.output);
    CHECK(check.exit_code == 0);
  }
}

TEST_CASE("zoo: kiln summary counts trainable and non-trainable (running statistics) params") {
  auto r20 = run_kiln("summary graphs/zoo/resnet20.json 2>&1");
  INFO(r20.output);
  CHECK(r20.output.find("Trainable params: 269,722") != std::string::npos);      // He et al., option A
  CHECK(r20.output.find("Non-trainable params: 1,376") != std::string::npos);    // 19 batch norms' running mean and variance
  auto lenet = run_kiln("summary graphs/zoo/lenet5.json 2>&1");
  INFO(lenet.output);
  CHECK(lenet.output.find("Total params: 61,706") != std::string::npos);
  // conv1 28x28x6 x 25 + conv2 10x10x16 x 150 + dense 400x120 + 120x84 + 84x10
  CHECK(lenet.output.find("Multiply-adds per example: 416,520") != std::string::npos);
  auto mobile = run_kiln("summary graphs/zoo/mobilenet_small.json 2>&1");
  INFO(mobile.output);
  CHECK(mobile.output.find("Multiply-adds per example: 8,039,552") != std::string::npos);  // under the 30 M budget
}

TEST_CASE("block tour: training and inference forms match the interpreter, gradcheck passes, LeNet-5 gradcheck passes") {
  auto numerics = run_kiln("compile graphs/block_tour.json --train " + adam_spec("graphs/block_tour.json") + " --check-numerics --batch 3 2>&1");
  INFO(numerics.output);
  CHECK(numerics.exit_code == 0);
  for (const char* entry : {"predict", "eval_step", "train_step"})
    CHECK(numerics.output.find(std::string("check-numerics ") + entry + ":") != std::string::npos);
  auto grad = run_kiln("gradcheck graphs/block_tour.json 2>&1");
  INFO(grad.output);
  CHECK(grad.exit_code == 0);
  for (const char* param : {"bn/gamma", "gn/beta", "emb/embeddings", "ln/gamma", "attn/query/kernel", "attn/output/bias"})
    CHECK(grad.output.find(param) != std::string::npos);
  CHECK(grad.output.find("bn/running_mean") == std::string::npos);  // state, not differentiated
  auto lenet = run_kiln("gradcheck graphs/zoo/lenet5.json --samples 4 --batch 2 2>&1");
  INFO(lenet.output);
  CHECK(lenet.exit_code == 0);
}

TEST_CASE("zoo: resnet20's compiled training step matches the interpreter kernel by kernel") {
  auto numerics = run_kiln("compile graphs/zoo/resnet20.json --train " + adam_spec("graphs/zoo/resnet20.json") + " --check-numerics --batch 2 2>&1");
  INFO(numerics.output);
  CHECK(numerics.exit_code == 0);
  CHECK(numerics.output.find("check-numerics train_step:") != std::string::npos);
}

TEST_CASE("zoo: char_gpt's predict is the inference form, its attention products batched GEMMs") {
  auto ir = run_kiln("ir graphs/zoo/char_gpt.json --stage loops --entry predict --batch 2 2>&1");
  REQUIRE(ir.exit_code == 0);
  // scores and context per (example, head): one GEMM kernel each over N * 4 products.
  size_t batched = 0;
  for (size_t at = 0; (at = ir.output.find("gemm [(N * 4) products", at)) != std::string::npos; ++at) ++batched;
  CHECK(batched == 8);  // 4 blocks x (q k^T, p v)
  // The causal mask is the softmax's own (no -1e9 scores added over [T, T]),
  // and 1/sqrt(d) scales q ([T, 32] a head) instead of the scores ([T, T]).
  size_t causal = 0, scaled_q = 0;
  for (size_t at = 0; (at = ir.output.find("softmax over axis 3, causal", at)) != std::string::npos; ++at) ++causal;
  for (size_t at = 0; (at = ir.output.find("matmul_3/scaled = ", at)) != std::string::npos; ++at) ++scaled_q;
  CHECK(causal == 4);
  CHECK(scaled_q == 4);  // each block's scores: the product of the scaled q, no epilogue
  CHECK(ir.output.find("constant_1[") == std::string::npos);
  CHECK(ir.output.find("Philox") == std::string::npos);  // no dropout in inference
  CHECK(ir.output.find("entry train_step") == std::string::npos);
  auto train = run_kiln("ir graphs/zoo/char_gpt.json --stage loops --entry train_step --batch 2 2>&1");
  CHECK(train.output.find("Philox") != std::string::npos);  // dropout masks drawn in training
  auto bad = run_kiln("ir graphs/zoo/char_gpt.json --stage loops --entry predictt 2>&1");
  CHECK(bad.exit_code != 0);
  CHECK(bad.output.find("no entry 'predictt' in this program (it has predict, eval_step, train_step)") != std::string::npos);
}
