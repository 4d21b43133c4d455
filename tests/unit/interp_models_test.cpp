// The experiment graphs through the interpreter on real MNIST images, and
// `kiln run` end to end. Skips (with a message) when ../shared/data is absent.
#include <doctest/doctest.h>
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

#include "compiler/frontend/graph_json.h"
#include "compiler/interp/interpreter.h"

using namespace kiln;
using interp::Value;
namespace fs = std::filesystem;

namespace {

const std::string kData = KILN_SOURCE_DIR "/../shared/data/mnist/";

// Reads `count` items after a big-endian magic header of `header` bytes from an IDX .gz file.
bool read_idx(const std::string& file, size_t header, size_t count, std::vector<unsigned char>& out) {
  gzFile f = gzopen((kData + file).c_str(), "rb");
  if (!f) return false;
  std::vector<unsigned char> head(header);
  out.resize(count);
  bool ok = gzread(f, head.data(), static_cast<unsigned>(header)) == static_cast<int>(header) &&
            gzread(f, out.data(), static_cast<unsigned>(count)) == static_cast<int>(count);
  gzclose(f);
  return ok;
}

// The first n test images scaled to [0, 1] (NHWC, C = 1) and their labels.
bool mnist_test_images(size_t n, std::vector<double>& pixels, std::vector<double>& labels) {
  std::vector<unsigned char> px, lb;
  if (!read_idx("t10k-images-idx3-ubyte.gz", 16, n * 784, px) || !read_idx("t10k-labels-idx1-ubyte.gz", 8, n, lb))
    return false;
  pixels.assign(px.begin(), px.end());
  for (double& p : pixels) p /= 255.0;
  labels.assign(lb.begin(), lb.end());
  return true;
}

bool all_finite(const Value& v) {
  for (double x : v.data)
    if (!std::isfinite(x)) return false;
  return true;
}

}  // namespace

TEST_CASE("interp runs the MNIST CNN on 4 real images: finite logits 4x10 identical twice") {
  std::vector<double> pixels, labels;
  if (!mnist_test_images(4, pixels, labels)) {
    MESSAGE("skipped: MNIST not found under " << kData);
    return;
  }
  Graph g = load_graph(KILN_SOURCE_DIR "/graphs/cnn_mnist.json");
  auto feeds = interp::init_params(g);
  feeds["x"] = Value{DType::f32, {4, 28, 28, 1}, pixels};
  feeds["labels"] = Value{DType::i32, {4}, labels};
  interp::Interpreter run(g);
  auto first = run.run(feeds), second = run.run(feeds);
  const Value& logits = first.at("logits");
  CHECK(logits.shape == Shape{4, 10});
  CHECK(all_finite(logits));
  for (auto& [name, v] : first) CHECK(v.data == second.at(name).data);  // bit-identical
  // The other outputs agree with the logits by their definitions.
  const Value& probs = first.at("probabilities");
  double loss = 0;
  int correct = 0;
  for (size_t i = 0; i < 4; ++i) {
    double row = 0;
    size_t best = 0;
    for (size_t k = 0; k < 10; ++k) {
      row += probs.data[i * 10 + k];
      if (logits.data[i * 10 + k] > logits.data[i * 10 + best]) best = k;
    }
    CHECK(row == doctest::Approx(1.0).epsilon(1e-5));
    loss -= std::log(probs.data[i * 10 + static_cast<size_t>(labels[i])]) / 4;
    correct += best == static_cast<size_t>(labels[i]);
  }
  CHECK(first.at("loss").data[0] == doctest::Approx(loss).epsilon(1e-5));
  CHECK(first.at("correct").data[0] == correct);
}

TEST_CASE("interp runs the CIFAR MLP on standardized real pixels: finite logits 4x10 identical twice") {
  std::vector<double> pixels, labels;
  if (!mnist_test_images(4, pixels, labels)) {
    MESSAGE("skipped: MNIST not found under " << kData);
    return;
  }
  // Per-image standardization as in the seed, then the 784 pixels tiled to 3072.
  std::vector<double> x(4 * 3072), t(4 * 10, 0.0);
  for (size_t i = 0; i < 4; ++i) {
    double mean = 0, var = 0;
    for (size_t p = 0; p < 784; ++p) mean += pixels[i * 784 + p] / 784;
    for (size_t p = 0; p < 784; ++p) var += (pixels[i * 784 + p] - mean) * (pixels[i * 784 + p] - mean) / 784;
    double scale = std::max(std::sqrt(var), 1.0 / std::sqrt(784.0));
    for (size_t p = 0; p < 3072; ++p) x[i * 3072 + p] = (pixels[i * 784 + p % 784] - mean) / scale;
    t[i * 10 + static_cast<size_t>(labels[i])] = 1;
  }
  Graph g = load_graph(KILN_SOURCE_DIR "/graphs/mlp_cifar10.json");
  auto feeds = interp::init_params(g);
  feeds["x"] = Value{DType::f32, {4, 3072}, x};
  feeds["t"] = Value{DType::f32, {4, 10}, t};
  interp::Interpreter run(g);
  auto first = run.run(feeds), second = run.run(feeds);
  CHECK(first.at("logits").shape == Shape{4, 10});
  CHECK(all_finite(first.at("logits")));
  CHECK(all_finite(first.at("loss")));
  CHECK(first.at("loss").data[0] > 0);
  for (auto& [name, v] : first) CHECK(v.data == second.at(name).data);
}

namespace {

// Minimal .npy helpers for the CLI test (written from the format spec, v1.0).
void write_npy_f32(const std::string& path, const Shape& shape, const std::vector<double>& data) {
  std::string dims;
  for (auto d : shape) dims += std::to_string(d) + ", ";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  f.write("\x93NUMPY\x01\x00", 8);
  uint16_t len = static_cast<uint16_t>(header.size());
  f.put(static_cast<char>(len & 0xff)).put(static_cast<char>(len >> 8));
  f << header;
  for (double v : data) {
    float x = static_cast<float>(v);
    f.write(reinterpret_cast<const char*>(&x), 4);
  }
}

// Returns the header dict text and fills `floats` with the <f4 payload.
std::string read_npy(const std::string& path, std::vector<float>& floats) {
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (bytes.size() < 10) return "";
  size_t len = static_cast<unsigned char>(bytes[8]) | static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8;
  floats.resize((bytes.size() - 10 - len) / 4);
  std::memcpy(floats.data(), bytes.data() + 10 + len, floats.size() * 4);
  return bytes.substr(10, len);
}

int run_kiln(const std::string& args, const std::string& log) {
  std::string cmd = std::string(KILN_BINARY) + " " + args + " > " + log + " 2>&1";
  int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("kiln run: CNN on 2 real images writes logits.npy of shape 2x10 and bad shapes are located errors") {
  std::vector<double> pixels, labels;
  if (!mnist_test_images(2, pixels, labels)) {
    MESSAGE("skipped: MNIST not found under " << kData);
    return;
  }
  fs::path dir = fs::temp_directory_path() / ("kiln_interp_cli_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string x = (dir / "x.npy").string(), log = (dir / "log.txt").string();
  write_npy_f32(x, {2, 28, 28, 1}, pixels);
  std::string graph = KILN_SOURCE_DIR "/graphs/cnn_mnist.json";

  int rc = run_kiln("run " + graph + " --input x=" + x + " --output " + (dir / "out").string(), log);
  INFO(slurp(log));
  REQUIRE(rc == 0);
  std::vector<float> logits;
  std::string header = read_npy((dir / "out" / "logits.npy").string(), logits);
  CHECK(header.find("'descr': '<f4'") != std::string::npos);
  CHECK(header.find("'shape': (2, 10)") != std::string::npos);
  REQUIRE(logits.size() == 20);
  // The same seed gives the same numbers as the library's interpreter, bit for bit.
  Graph g = load_graph(graph);
  auto feeds = interp::init_params(g);
  feeds["x"] = Value{DType::f32, {2, 28, 28, 1}, pixels};
  auto want = interp::Interpreter(g).run(feeds, {"logits"}).at("logits");
  for (size_t i = 0; i < 20; ++i) CHECK(static_cast<double>(logits[i]) == want.data[i]);
  CHECK(slurp(log).find("skipping output 'loss': it needs input labels") != std::string::npos);

  write_npy_f32(x, {2, 28, 27, 1}, std::vector<double>(2 * 28 * 27, 0.5));
  rc = run_kiln("run " + graph + " --input x=" + x, log);
  CHECK(rc == 1);
  CHECK(slurp(log).find(x + ": input 'x': expected f32[?,28,28,1], got f32[2,28,27,1] (dimension 2)") !=
        std::string::npos);
  std::ofstream(x, std::ios::binary) << "not an array";
  rc = run_kiln("run " + graph + " --input x=" + x, log);
  CHECK(rc == 1);
  CHECK(slurp(log).find(x + ": not a .npy file") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("kiln run --params reads every param from NAME.npy ('/' as '__') and uses those values") {
  std::vector<double> pixels, labels;
  if (!mnist_test_images(1, pixels, labels)) {
    MESSAGE("skipped: MNIST not found under " << kData);
    return;
  }
  fs::path dir = fs::temp_directory_path() / ("kiln_interp_params_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "params");
  std::string graph = KILN_SOURCE_DIR "/graphs/cnn_mnist.json";
  Graph g = load_graph(graph);
  auto feeds = interp::init_params(g, 12345);  // not the graph's own seed
  for (auto& [name, v] : feeds) {
    std::string file = name;
    for (size_t at; (at = file.find('/')) != std::string::npos;) file.replace(at, 1, "__");
    write_npy_f32((dir / "params" / (file + ".npy")).string(), v.shape, v.data);
  }
  std::string x = (dir / "x.npy").string(), log = (dir / "log.txt").string();
  write_npy_f32(x, {1, 28, 28, 1}, pixels);
  int rc = run_kiln("run " + graph + " --input x=" + x + " --params " + (dir / "params").string() + " --output " +
                        (dir / "out").string() + " --fetch logits",
                    log);
  INFO(slurp(log));
  REQUIRE(rc == 0);
  std::vector<float> logits;
  read_npy((dir / "out" / "logits.npy").string(), logits);
  feeds["x"] = Value{DType::f32, {1, 28, 28, 1}, pixels};
  auto want = interp::Interpreter(g).run(feeds, {"logits"}).at("logits");
  REQUIRE(logits.size() == 10);
  for (size_t i = 0; i < 10; ++i) CHECK(static_cast<double>(logits[i]) == want.data[i]);
  // --seed 12345 draws the very same params.
  rc = run_kiln("run " + graph + " --input x=" + x + " --seed 12345 --output " + (dir / "seeded").string(), log);
  REQUIRE(rc == 0);
  std::vector<float> seeded;
  read_npy((dir / "seeded" / "logits.npy").string(), seeded);
  CHECK(seeded == logits);
  fs::remove(dir / "params" / "dense__kernel.npy");
  rc = run_kiln("run " + graph + " --input x=" + x + " --params " + (dir / "params").string(), log);
  CHECK(rc == 1);
  CHECK(slurp(log).find("dense__kernel.npy: missing (the value of param 'dense/kernel')") != std::string::npos);
  fs::remove_all(dir);
}
