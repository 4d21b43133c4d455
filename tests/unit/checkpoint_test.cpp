#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <thread>

#include "runtime/data/npy.h"
#include "runtime/file_io.h"
#include "runtime/train/checkpoint.h"
#include "runtime/train/param_export.h"
#include "tests/unit/data_fixtures.h"

using namespace kiln;
using namespace kiln::train;
using kiln::test::TempDir;

namespace {

template <class T>
Tensor filled(ElemType dt, std::vector<int64_t> shape, T start) {
  Tensor t(dt, std::move(shape));
  T* p = t.data<T>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(start + static_cast<T>(i));
  return t;
}

Checkpoint sample(int64_t big_elems = 6) {
  Checkpoint c;
  c.graph_json = R"({"format": "kiln.graph/1", "name": "mlp"})";
  c.spec_json = std::string("{\"batch\": 64}\0tail", 18);  // embedded NUL survives
  Tensor w = filled<float>(ElemType::f32, {2, big_elems / 2}, 0.5f);
  w.data<float>()[0] = -0.0f;
  w.data<float>()[1] = std::numeric_limits<float>::quiet_NaN();
  w.data<float>()[2] = std::numeric_limits<float>::denorm_min();
  c.params.push_back({"w1", std::move(w)});
  c.params.push_back({"conv/b:0", filled<double>(ElemType::f64, {3}, -1.25)});
  c.params.push_back({"scalar", filled<int64_t>(ElemType::i64, {}, int64_t{1} << 50)});
  c.params.push_back({"empty", Tensor(ElemType::f32, {0, 4})});
  c.optimizer_state.push_back({"adam/m/w1", filled<float>(ElemType::f32, {2, big_elems / 2}, 1e-8f)});
  c.optimizer_state.push_back({"mask", filled<uint8_t>(ElemType::u8, {4}, 0)});
  Tensor flags(ElemType::boolean, {3});
  flags.data<bool>()[1] = true;
  c.optimizer_state.push_back({"flags", std::move(flags)});
  c.optimizer_state.push_back({"count", filled<int32_t>(ElemType::i32, {2, 1}, -3)});
  c.step = 123456789012;
  c.rng_state = std::string("\x01\x02\xff\x00rng", 7);
  c.data_position = {3, 17, "5489 1 2 3"};
  c.metrics_json = R"([{"epoch": 1, "loss": 3.048}])";
  return c;
}

void check_same(const Checkpoint& a, const Checkpoint& b) {
  CHECK(a.graph_json == b.graph_json);
  CHECK(a.spec_json == b.spec_json);
  REQUIRE(a.params.size() == b.params.size());
  for (size_t i = 0; i < a.params.size(); ++i) {
    CHECK(a.params[i].name == b.params[i].name);
    CHECK(a.params[i].value.bit_equal(b.params[i].value));
  }
  REQUIRE(a.optimizer_state.size() == b.optimizer_state.size());
  for (size_t i = 0; i < a.optimizer_state.size(); ++i) {
    CHECK(a.optimizer_state[i].name == b.optimizer_state[i].name);
    CHECK(a.optimizer_state[i].value.bit_equal(b.optimizer_state[i].value));
  }
  CHECK(a.step == b.step);
  CHECK(a.rng_state == b.rng_state);
  CHECK(a.data_position == b.data_position);
  CHECK(a.metrics_json == b.metrics_json);
}

}  // namespace

TEST_CASE("checkpoint: every field round-trips bit for bit") {
  TempDir dir;
  Checkpoint c = sample();
  save_checkpoint(dir / "a.ckpt", c);
  Checkpoint back = load_checkpoint(dir / "a.ckpt");
  check_same(c, back);
  CHECK(std::isnan(back.params[0].value.data<float>()[1]));
  CHECK(std::signbit(back.params[0].value.data<float>()[0]));
  CHECK(find_tensor(back.params, "conv/b:0") != nullptr);
  CHECK(find_tensor(back.params, "nope") == nullptr);
  CHECK(encode_checkpoint(back) == read_file_bytes(dir / "a.ckpt"));
  // No temporary file is left behind.
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path)) files += e.is_regular_file();
  CHECK(files == 1);
}

TEST_CASE("checkpoint: corrupt, truncated, foreign and newer files are refused") {
  TempDir dir;
  const auto good = encode_checkpoint(sample());
  std::string p = dir / "x.ckpt";

  // A flipped bit in a tensor's values: only the checksum can catch it.
  std::string m = "adam/m/w1";
  auto in_values = std::search(good.begin(), good.end(), m.begin(), m.end()) - good.begin() + 40;
  auto bad = good;
  bad[in_values] ^= 0x01;
  test::write_bytes(p, bad);
  KILN_CHECK_THROWS_WITH_ALL(load_checkpoint(p), p.c_str(), "checksum mismatch");
  // A flipped bit in a count: the structure breaks, and the message says the
  // checksum fails too.
  bad = good;
  bad[in_values - 40 - 8 - 4] ^= 0x10;  // optimizer count 4 -> 20
  test::write_bytes(p, bad);
  KILN_CHECK_THROWS_WITH_ALL(load_checkpoint(p), p.c_str(), "optimizer tensor", "truncated or corrupt");
  bad = good;
  bad[good.size() - 1] ^= 0x80;  // the checksum itself
  test::write_bytes(p, bad);
  KILN_CHECK_THROWS_WITH_ALL(load_checkpoint(p), p.c_str(), "checksum mismatch");

  // Truncated at every length: always an error naming the file, never a crash.
  for (size_t n = 0; n < good.size(); n += (n < 200 ? 1 : 7)) {
    CAPTURE(n);
    std::string msg;
    try {
      decode_checkpoint(std::span(good).first(n), p);
    } catch (const FileError& e) {
      msg = e.what();
    }
    CHECK(msg.rfind(p + ": ", 0) == 0);
  }
  // Find where tensor 'w1' starts and cut inside it.
  std::string w1 = "w1";
  auto at = std::search(good.begin(), good.end(), w1.begin(), w1.end()) - good.begin();
  test::write_bytes(p, std::vector<uint8_t>(good.begin(), good.begin() + at + 10));
  KILN_CHECK_THROWS_WITH_ALL(load_checkpoint(p), p.c_str(), "truncated at byte", "while reading params tensor 'w1'");
  test::write_bytes(p, std::vector<uint8_t>(good.begin(), good.end() - 2));
  KILN_CHECK_THROWS_WITH_ALL(load_checkpoint(p), p.c_str(), "truncated at byte", "checksum");

  // A corrupt huge length must not allocate: graph length set to 2^62.
  bad = good;
  uint64_t huge = uint64_t{1} << 62;
  std::memcpy(bad.data() + 16, &huge, 8);
  test::write_bytes(p, bad);
  KILN_CHECK_THROWS_WITH_ALL(load_checkpoint(p), p.c_str(), "while reading the graph JSON");

  test::write_bytes(p, {'P', 'K', 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  KILN_CHECK_THROWS_WITH_ALL(load_checkpoint(p), p.c_str(), "not a kiln checkpoint", "magic");
  bad = good;
  bad[8] = 7;
  test::write_bytes(p, bad);
  KILN_CHECK_THROWS_WITH_ALL(load_checkpoint(p), p.c_str(), "format version 7 is newer than this kiln (1)");
  bad = good;
  bad.push_back(0);
  test::write_bytes(p, bad);
  KILN_CHECK_THROWS_WITH_ALL(load_checkpoint(p), p.c_str(), "1 unexpected bytes");
  KILN_CHECK_THROWS_WITH_ALL(load_checkpoint(dir / "missing.ckpt"), "missing.ckpt", "cannot open");

  Checkpoint dup = sample();
  dup.params.push_back({"w1", Tensor(ElemType::f32, {1})});
  CHECK_THROWS_AS(encode_checkpoint(dup), std::invalid_argument);
}

TEST_CASE("checkpoint: a save that fails midway leaves the previous one intact") {
  TempDir dir;
  std::string p = dir / "run.ckpt";
  Checkpoint old = sample();
  save_checkpoint(p, old);
  Checkpoint next = sample(3 << 20);  // ~24 MiB of tensors: many 1 MiB chunks
  next.step = 999;
  for (size_t fail_at : {size_t{1}, size_t{5}, size_t{20}}) {
    size_t chunks = 0;
    CHECK_THROWS(save_checkpoint(p, next, [&](size_t) {
      if (++chunks == fail_at) throw std::runtime_error("injected fault");
    }));
    check_same(load_checkpoint(p), old);
    CHECK(!std::filesystem::exists(p + ".tmp." + std::to_string(getpid())));
  }
}

TEST_CASE("checkpoint: a saving process killed with SIGKILL at any moment leaves a whole checkpoint") {
  TempDir dir;
  std::string p = dir / "run.ckpt";
  Checkpoint old = sample();
  save_checkpoint(p, old);
  Checkpoint next = sample(2 << 20);
  next.step = 777;
  int kept_old = 0, got_new = 0;
  for (int delay_us : {0, 200, 1000, 3000, 8000, 20000, 60000, 400000}) {
    save_checkpoint(p, old);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      // Keep saving until killed (the first save may finish before the kill).
      for (int k = 0; k < 50; ++k) save_checkpoint(p, next);
      _exit(0);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    Checkpoint now = load_checkpoint(p);  // never torn: the old or the new, whole
    if (now.step == old.step) {
      check_same(now, old);
      ++kept_old;
    } else {
      check_same(now, next);
      ++got_new;
    }
    std::filesystem::remove(p + ".tmp." + std::to_string(child));  // what a killed writer leaves
  }
  MESSAGE("kills before the rename: " << kept_old << ", after: " << got_new);
  CHECK(kept_old > 0);
}

TEST_CASE("checkpoint: params export to .npy files and import back") {
  TempDir dir;
  Checkpoint c = sample();
  c.params.push_back({"conv/b_0", Tensor(ElemType::f32, {2})});  // sanitizes like "conv/b:0"
  c.params.push_back({"..", Tensor(ElemType::i32, {1})});
  export_params_npy(dir / "params", c.params);
  CHECK(std::filesystem::exists(dir / "params/manifest.json"));
  CHECK(std::filesystem::exists(dir / "params/w1.npy"));
  CHECK(std::filesystem::exists(dir / "params/conv_b_0.npy"));
  CHECK(std::filesystem::exists(dir / "params/conv_b_0_2.npy"));
  auto back = import_params_npy(dir / "params");
  REQUIRE(back.size() == c.params.size());
  for (size_t i = 0; i < back.size(); ++i) {
    CHECK(back[i].name == c.params[i].name);
    CHECK(back[i].value.bit_equal(c.params[i].value));
  }
  CHECK(sanitize_file_name("a b/c:d") == "a_b_c_d");
  // A file replaced behind the manifest's back.
  data::write_npy(dir / "params/w1.npy", Tensor(ElemType::f64, {1}));
  KILN_CHECK_THROWS_WITH_ALL(import_params_npy(dir / "params"), "w1.npy", "manifest says");
  KILN_CHECK_THROWS_WITH_ALL(import_params_npy(dir / "nothing"), "manifest.json", "cannot open");
}
