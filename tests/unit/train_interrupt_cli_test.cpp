// The real Ctrl-C path of `kiln train` (label "e2e"): SIGINT mid-run saves
// interrupted.ckpt and exits with 130; `--resume` then ends with exactly the
// params of an uninterrupted run. Needs data/ prepared (else skipped).
#include <doctest/doctest.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "compiler/autodiff/train_step.h"
#include "compiler/frontend/graph_json.h"
#include "compiler/interp/interpreter.h"
#include "compiler/interp/value_io.h"
#include "runtime/data/npy.h"
#include "runtime/train/checkpoint.h"
#include "tests/unit/test_util.h"

using namespace kiln;
namespace fs = std::filesystem;

namespace {

// A CNN spec small enough for seconds: 640 MNIST images, batches of 8, 3 epochs.
std::string write_spec(const fs::path& dir, const std::string& graph = "graphs/cnn_mnist.json") {
  nlohmann::json spec = nlohmann::json::parse(std::ifstream(test::source_path("graphs/experiments/e4a_cnn.json")));
  spec["graph"] = test::source_path(graph);
  spec["data"]["dir"] = test::source_path("data/mnist");
  spec["batch_size"] = 8;
  spec["epochs"] = 3;
  spec["validation"]["count"] = 100;
  spec["metrics"] = {"loss", "accuracy"};
  fs::path file = dir / "spec.json";
  std::ofstream(file) << spec.dump(2);
  return file.string();
}

// Runs kiln with `args`, sends SIGINT once its output contains `after`, and
// returns the exit status (or -1 if it died of a signal) and what it printed.
test::CommandResult run_and_interrupt(const std::vector<std::string>& args, const std::string& after) {
  int out[2];
  REQUIRE(pipe(out) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(out[1], 1), dup2(out[1], 2);
    close(out[0]), close(out[1]);
    std::vector<char*> argv{const_cast<char*>(KILN_BINARY)};
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(KILN_BINARY, argv.data());
    _exit(127);
  }
  close(out[1]);
  test::CommandResult r{-1, ""};
  bool sent = false;
  char buf[4096];
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;) {
    r.output.append(buf, static_cast<size_t>(n));
    if (!sent && r.output.find(after) != std::string::npos) {
      kill(pid, SIGINT);
      sent = true;
    }
  }
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// kiln with these arguments, each quoted.
test::CommandResult run_kiln_args(const std::vector<std::string>& args) {
  std::string cmd = std::string("'") + KILN_BINARY + "'";
  for (auto& a : args) cmd += " '" + a + "'";
  return test::run_command(cmd);
}

// A fresh temporary directory for a run on MNIST; empty (and a message) when MNIST is not prepared.
fs::path mnist_run_dir(const std::string& prefix) {
  if (!fs::exists(test::source_path("data/mnist/train-images-idx3-ubyte.gz"))) {
    MESSAGE("skipped: MNIST not prepared in data/ (kiln data prepare --from ../shared/data)");
    return {};
  }
  fs::path dir = fs::temp_directory_path() / (prefix + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

}  // namespace

TEST_SUITE("e2e") {
TEST_CASE("e2e: kiln train: Ctrl-C saves interrupted.ckpt and exits 130, and --resume ends bitwise equal to an uninterrupted run") {
  const fs::path dir = mnist_run_dir("kiln_interrupt_");
  if (dir.empty()) return;
  std::string spec = write_spec(dir), graph = test::source_path("graphs/cnn_mnist.json");
  const std::vector<std::string> common{"train", graph, spec, "--subset", "640", "--test-subset", "200", "--threads", "2"};

  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = common;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  test::CommandResult whole = run_kiln_args(with({"--out", (dir / "whole").string()}));
  REQUIRE_MESSAGE(whole.exit_code == 0, whole.output);

  // Interrupt once the first epoch's line is out: two more epochs remain.
  test::CommandResult cut = run_and_interrupt(with({"--out", (dir / "cut").string()}), "Epoch : 1 ,");
  INFO(cut.output);
  CHECK(cut.exit_code == 130);
  CHECK(cut.output.find("interrupted after step") != std::string::npos);
  REQUIRE(fs::exists(dir / "cut" / "interrupted.ckpt"));
  CHECK_FALSE(fs::exists(dir / "cut" / "final.ckpt"));

  test::CommandResult resumed =
      run_kiln_args(with({"--out", (dir / "cut").string(), "--resume", (dir / "cut" / "interrupted.ckpt").string()}));
  REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.output);
  CHECK(resumed.output.find("resuming from") != std::string::npos);

  train::Checkpoint a = train::load_checkpoint((dir / "whole" / "final.ckpt").string());
  train::Checkpoint b = train::load_checkpoint((dir / "cut" / "final.ckpt").string());
  REQUIRE(a.params.size() == 8);  // 4 conv/dense layers: kernel + bias each
  REQUIRE(b.params.size() == a.params.size());
  for (size_t i = 0; i < a.params.size(); ++i) {
    INFO(a.params[i].name);
    CHECK(a.params[i].name == b.params[i].name);
    CHECK(a.params[i].value.bit_equal(b.params[i].value));
  }
  REQUIRE(a.optimizer_state.size() == b.optimizer_state.size());
  for (size_t i = 0; i < a.optimizer_state.size(); ++i) CHECK(a.optimizer_state[i].value.bit_equal(b.optimizer_state[i].value));
  fs::remove_all(dir);
}

// Batch norm and dropout (issue 22): the dropout masks are drawn by step and
// element, so 1 and 2 threads and a resumed run train the same bits; the
// running statistics are saved and predict normalizes by them, so an image
// alone, the same image in a batch of 100 and the interpreter's inference
// form agree.
TEST_CASE("e2e: batch norm and dropout: the same bits on 1 and 2 threads and after a resume, predict uses running statistics") {
  const fs::path dir = mnist_run_dir("kiln_modes_");
  if (dir.empty()) return;
  const std::string graph = test::source_path("tests/fixtures/bn_dropout_cnn.json");
  std::string spec = write_spec(dir, "tests/fixtures/bn_dropout_cnn.json");
  auto train_args = [&](const std::string& threads, const std::string& out, std::vector<std::string> extra = {}) {
    std::vector<std::string> a{"train", graph, spec, "--subset", "640", "--test-subset", "200", "--threads", threads,
                               "--out", (dir / out).string()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  for (auto [threads, out] : {std::pair{"1", "one"}, {"2", "two"}}) {
    auto r = run_kiln_args(train_args(threads, out));
    REQUIRE_MESSAGE(r.exit_code == 0, r.output);
  }
  auto cut = run_and_interrupt(train_args("2", "cut"), "Epoch : 1 ,");
  REQUIRE_MESSAGE(cut.exit_code == 130, cut.output);
  auto resumed = run_kiln_args(train_args("2", "cut", {"--resume", (dir / "cut" / "interrupted.ckpt").string()}));
  REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.output);

  train::Checkpoint one = train::load_checkpoint((dir / "one" / "final.ckpt").string());
  for (const char* other : {"two", "cut"}) {
    train::Checkpoint b = train::load_checkpoint((dir / other / "final.ckpt").string());
    REQUIRE(b.params.size() == one.params.size());
    for (size_t i = 0; i < one.params.size(); ++i) {
      INFO(other << ": " << one.params[i].name);
      CHECK(one.params[i].value.bit_equal(b.params[i].value));
    }
  }
  const Tensor* running = train::find_tensor(one.params, "bn/running_var");
  REQUIRE(running != nullptr);  // saved with the params
  CHECK(running->span<float>()[0] != 1.0f);  // moved from its initial 1 by the steps

  // Predict: 100 images at once, three of them alone, and the interpreter.
  Tensor images(ElemType::f32, {100, 28, 28, 1});
  uint32_t state = 12345;
  for (float& v : images.span<float>()) v = static_cast<float>((state = state * 1664525u + 1013904223u) >> 8) / 16777216.0f;
  data::write_npy((dir / "all.npy").string(), images);
  const std::string ckpt = (dir / "one" / "final.ckpt").string();
  auto all = run_kiln_args({"predict", ckpt, "--input", (dir / "all.npy").string(), "--output", (dir / "all_p.npy").string()});
  REQUIRE_MESSAGE(all.exit_code == 0, all.output);
  Tensor batch_probs = data::read_npy((dir / "all_p.npy").string());

  Graph model = load_graph(graph);
  Graph predict = build_predict(model);  // the inference form
  std::map<std::string, interp::Value> feeds;
  for (const auto& p : one.params) feeds[p.name] = interp::to_value(p.value);
  feeds["x"] = interp::to_value(images);
  interp::Value want = interp::Interpreter(predict, interp::Precision::f64).run(feeds, {"probabilities"}).at("probabilities");

  for (int64_t k : {0, 41, 99}) {
    Tensor one_image(ElemType::f32, {1, 28, 28, 1});
    std::copy_n(images.span<float>().begin() + k * 784, 784, one_image.span<float>().begin());
    const fs::path in = dir / ("one_" + std::to_string(k) + ".npy"), outp = dir / ("one_p_" + std::to_string(k) + ".npy");
    data::write_npy(in.string(), one_image);
    auto r = run_kiln_args({"predict", ckpt, "--input", in.string(), "--output", outp.string()});
    REQUIRE_MESSAGE(r.exit_code == 0, r.output);
    Tensor alone = data::read_npy(outp.string());
    for (int64_t c = 0; c < 10; ++c) {
      const float a = alone.span<float>()[static_cast<size_t>(c)];
      const float in_batch = batch_probs.span<float>()[static_cast<size_t>(k * 10 + c)];
      const double oracle = want.data[static_cast<size_t>(k * 10 + c)];
      INFO("image " << k << " class " << c);
      CHECK(std::fabs(a - in_batch) <= 1e-6);
      CHECK(std::fabs(a - oracle) <= 1e-5);
    }
  }
  fs::remove_all(dir);
}
}
