#include "tools/kiln/data_prepare.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "runtime/data/cifar.h"
#include "runtime/data/image_tree_import.h"
#include "runtime/data/mnist.h"
#include "runtime/data/sha256.h"
#include "runtime/data/tar_extract.h"
#include "runtime/file_io.h"
#include "tools/kiln/command.h"
#include "tools/kiln/data_sources.h"

extern char** environ;

namespace kiln::cli {

namespace fs = std::filesystem;

namespace {

void say(const std::string& line) { std::cerr << line << std::endl; }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string fixed(double v, int digits = 1) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// True when `path` exists and hashes to the source table's checksum.
bool verified(const std::string& path, const DataSource& src) {
  return file_exists(path) && data::sha256_file_hex(path) == src.sha256;
}

void check_sha(const std::string& path, const DataSource& src) {
  std::string got = data::sha256_file_hex(path);
  if (got != src.sha256)
    throw InputError(path + ": checksum mismatch: SHA-256 is " + got + ", expected " + src.sha256 +
                     " (a different or damaged copy of " + src.file + ")");
}

// Copies through a temporary name so an interrupted copy never looks done.
void copy_file_atomic(const std::string& from, const std::string& to) {
  std::string tmp = to + ".part";
  fs::copy_file(from, tmp, fs::copy_options::overwrite_existing);
  // The source may be read-only (a shared folder); the copy is ours.
  fs::permissions(tmp, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read | fs::perms::others_read);
  fs::rename(tmp, to);
}

// Runs curl (never through a shell). Exit codes 5, 6, 7 and 28 mean the
// host could not be reached: reported as "no network".
void download(const std::string& url, const std::string& to) {
  std::string tmp = to + ".part";
  std::vector<std::string> args = {"curl", "-fL", "--retry", "2", "--connect-timeout", "20", "-o", tmp, url};
  args.insert(args.begin() + 1, isatty(2) ? "--progress-bar" : "-sS");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  say("  downloading " + url);
  pid_t pid;
  if (posix_spawnp(&pid, "curl", nullptr, nullptr, argv.data(), environ) != 0)
    throw InputError("cannot download " + url + ": curl is not installed (install it, or use --from DIR with local copies)");
  int status = 0;
  waitpid(pid, &status, 0);
  int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (rc != 0) {
    std::error_code ec;
    fs::remove(tmp, ec);
    if (rc == 5 || rc == 6 || rc == 7 || rc == 28)
      throw InputError("no network: cannot reach " + url + " (curl exit code " + std::to_string(rc) +
                       "). Copy the files by hand and use `kiln data prepare --from DIR` (see data/README.md)");
    throw InputError("download of " + url + " failed (curl exit code " + std::to_string(rc) + ")");
  }
  fs::rename(tmp, to);
}

// Finds a source file in <from>/<dataset>/ or <from>/; "" when absent.
std::string find_source(const std::string& from, const DataSource& src) {
  for (std::string p : {from + "/" + src.dataset + "/" + src.file, from + "/" + src.file})
    if (file_exists(p)) return p;
  return "";
}

// Copies (or downloads) every source file of `dataset` into <out>/<dataset>, checked.
void prepare_files(const PrepareOptions& o, const std::string& dataset) {
  const std::string dir = o.out + "/" + dataset;
  fs::create_directories(dir);
  say(dataset + ": " + dir);
  for (auto& src : data_sources()) {
    if (dataset != src.dataset) continue;
    const std::string dst = dir + "/" + src.file;
    if (verified(dst, src)) {
      say("  " + std::string(src.file) + ": present, checksum ok");
      continue;
    }
    if (!o.from.empty()) {
      std::string path = find_source(o.from, src);
      if (path.empty()) throw InputError(o.from + "/" + dataset + "/" + src.file + ": not found (needed for " + dataset + ")");
      check_sha(path, src);
      copy_file_atomic(path, dst);
      say("  " + std::string(src.file) + ": copied from " + path + ", checksum ok");
    } else if (std::string(src.url).empty()) {
      throw InputError(std::string(src.file) + " has no download address: give --from DIR holding " + dataset + "/" +
                       src.file + " (../shared/data)");
    } else {
      download(src.url, dst);
      check_sha(dst, src);
      say("  " + std::string(src.file) + ": downloaded, checksum ok");
    }
  }
}

void prepare_mnist(const PrepareOptions& o) {
  prepare_files(o, "mnist");
  const std::string dir = o.out + "/mnist";
  auto train = data::load_mnist_split(dir, "train");
  auto test = data::load_mnist_split(dir, "t10k");
  say("  loads: " + std::to_string(train.size()) + " training and " + std::to_string(test.size()) + " test images");
}

// PREPARED.json lists each output file with its SHA-256, written last: if it
// is there and every file still matches, the work is done.
bool cifar_prepared(const std::string& manifest) {
  if (!file_exists(manifest)) return false;
  auto raw = read_file_bytes(manifest);
  auto m = nlohmann::json::parse(raw.begin(), raw.end(), nullptr, false);
  if (m.is_discarded() || !m.contains("files") || !m["files"].is_object() || m["files"].size() < 7) return false;
  const std::string dir = fs::path(manifest).parent_path().string();
  for (auto& [name, sha] : m["files"].items())
    if (!sha.is_string() || !file_exists(dir + "/" + name) || data::sha256_file_hex(dir + "/" + name) != sha.get<std::string>())
      return false;
  return true;
}

void import_split(const std::string& tgz, const std::string& split, const std::string& bin_dir) {
  const bool tty = isatty(2);
  int64_t last_report = -1;
  auto t0 = std::chrono::steady_clock::now();
  auto r = data::import_image_tree(tgz, [&](int64_t done, int64_t total) {
    if (tty) {
      std::cerr << "\r  " << split << ": decoded " << done << "/" << total << " images" << std::flush;
    } else if (done / 10000 != last_report / 10000 || done == total) {
      std::cerr << "  " << split << ": decoded " << done << "/" << total << " images\n";
    }
    last_report = done;
  });
  if (tty) std::cerr << "\n";
  if (r.data.images.dim(1) != data::kCifarSide || r.data.images.dim(2) != data::kCifarSide)
    throw InputError(tgz + ": images are " + std::to_string(r.data.images.dim(2)) + "x" + std::to_string(r.data.images.dim(1)) +
                     ", CIFAR-10 records need 32x32");
  if (r.data.class_names != data::cifar10_class_names())
    throw InputError(tgz + ": class folders are not the ten CIFAR-10 classes");
  data::write_cifar10_split(bin_dir, split, r.data);
  say("  " + split + ": " + std::to_string(r.data.size()) + " images imported from " + tgz + " in " +
      fixed(seconds_since(t0)) + " s");
}

void prepare_cifar10(const PrepareOptions& o) {
  const std::string dir = o.out + "/cifar10";
  const std::string bin_dir = dir + "/cifar-10-batches-bin";
  const std::string manifest = bin_dir + "/PREPARED.json";
  say("cifar10: " + bin_dir);
  if (cifar_prepared(manifest)) {
    say("  present, every file's checksum ok");
    return;
  }
  fs::create_directories(bin_dir);
  std::string source;
  auto extract_official = [&](const std::string& tgz) {
    auto t0 = std::chrono::steady_clock::now();
    auto written = data::extract_tar_members(tgz, bin_dir, [](const std::string& member) -> std::optional<std::string> {
      const std::string prefix = "cifar-10-batches-bin/";
      if (member.rfind(prefix, 0) != 0) return std::nullopt;
      std::string name = member.substr(prefix.size());
      bool known = name == "test_batch.bin" || name == "batches.meta.txt" ||
                   (name.size() == 16 && name.rfind("data_batch_", 0) == 0 && name[11] >= '1' && name[11] <= '5' &&
                    name.substr(12) == ".bin");
      return known ? std::optional(name) : std::nullopt;
    });
    if (written.size() != 7) throw InputError(tgz + ": expected 7 files under cifar-10-batches-bin/, found " + std::to_string(written.size()));
    say("  extracted " + std::to_string(written.size()) + " files from " + tgz + " in " + fixed(seconds_since(t0)) + " s");
  };
  const DataSource& official = data_source("cifar-10-binary.tar.gz");
  if (!o.from.empty()) {
    std::string off = find_source(o.from, official);
    std::string train = find_source(o.from, data_source("cifar10-train-jpeg.tar.gz"));
    std::string test = find_source(o.from, data_source("cifar10-test-jpeg.tar.gz"));
    if (!off.empty()) {
      check_sha(off, official);
      extract_official(off);
      source = official.file;
    } else if (!train.empty() && !test.empty()) {
      check_sha(train, data_source("cifar10-train-jpeg.tar.gz"));
      check_sha(test, data_source("cifar10-test-jpeg.tar.gz"));
      say("  source checksums ok; importing the JPEG trees");
      import_split(train, "train", bin_dir);
      import_split(test, "test", bin_dir);
      source = "cifar10-train-jpeg.tar.gz + cifar10-test-jpeg.tar.gz";
    } else {
      throw InputError(o.from + ": holds neither cifar10/cifar-10-binary.tar.gz nor both cifar10/cifar10-train-jpeg.tar.gz "
                       "and cifar10/cifar10-test-jpeg.tar.gz");
    }
  } else {
    const std::string tgz = o.out + "/downloads/" + official.file;
    fs::create_directories(o.out + "/downloads");
    if (!verified(tgz, official)) {
      download(official.url, tgz);
      check_sha(tgz, official);
    }
    extract_official(tgz);
    source = official.file;
  }
  // Verify by loading, then record what was written.
  auto train = data::load_cifar10(bin_dir, "train");
  auto test = data::load_cifar10(bin_dir, "test");
  if (train.size() != 50000 || test.size() != 10000)
    throw InputError(bin_dir + ": expected 50000 training and 10000 test images, found " + std::to_string(train.size()) +
                     " and " + std::to_string(test.size()));
  nlohmann::json m = {{"source", source}, {"files", nlohmann::json::object()}};
  for (auto& e : fs::directory_iterator(bin_dir)) {
    std::string name = e.path().filename().string();
    if (e.is_regular_file() && name != "PREPARED.json" && name.find(".tmp.") == std::string::npos)
      m["files"][name] = data::sha256_file_hex(e.path().string());
  }
  std::string text = m.dump(2) + "\n";
  write_file_atomic(manifest, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  say("  loads: 50000 training and 10000 test images");
}

}  // namespace

std::string default_data_dir() {
  std::error_code ec;
  for (fs::path p = fs::current_path(ec); !p.empty(); p = p.parent_path()) {
    if (fs::exists(p / "CMakeLists.txt") && fs::exists(p / "data" / "README.md")) return (p / "data").string();
    if (p == p.root_path()) break;
  }
  return "data";
}

void prepare_data(const PrepareOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  try {
    if (o.only.empty() || o.only == "mnist") prepare_mnist(o);
    if (o.only.empty() || o.only == "cifar10") prepare_cifar10(o);
    if (o.only == "text" || (o.only.empty() && !o.from.empty())) prepare_files(o, "text");
    else if (o.only.empty()) say("text: skipped (kjv.txt.gz is not downloadable; `kiln data prepare --from DIR` copies it)");
  } catch (const FileError& e) {
    throw InputError(e.what());
  } catch (const fs::filesystem_error& e) {
    throw InputError(e.what());
  }
  say("data ready in " + o.out + " (" + fixed(seconds_since(t0)) + " s)");
}

}  // namespace kiln::cli
