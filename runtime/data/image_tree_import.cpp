#include "runtime/data/image_tree_import.h"

#include <archive_entry.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "runtime/data/cifar.h"
#include "runtime/data/image_decode.h"
#include "runtime/data/tar_reader.h"
#include "runtime/file_io.h"

namespace kiln::data {

namespace {

constexpr int64_t kMaxImageBytes = int64_t{64} << 20;

struct Member {
  std::string path;  // normalized: no leading "./"
  std::string cls;
  std::vector<uint8_t> bytes;
};

bool is_image_name(const std::string& name) {
  auto dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == "jpg" || ext == "jpeg" || ext == "png";
}

// `path` names the opened archive `a` in errors.
std::vector<Member> read_members(archive* a, const std::string& path, std::string& root) {
  std::vector<Member> out;
  bool have_root = false;
  archive_entry* e = nullptr;
  while (true) {
    int rc = archive_read_next_header(a, &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN)
      fail_file(path, "corrupt archive after " + std::to_string(out.size()) +
                          " images: " + archive_error_text(a));
    if (archive_entry_filetype(e) != AE_IFREG) continue;
    std::string name = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
    while (name.rfind("./", 0) == 0) name.erase(0, 2);
    if (!is_image_name(name)) continue;
    auto slash = name.rfind('/');
    if (slash == std::string::npos || slash == 0)
      fail_file(path, "member " + name + ": an image must sit in a class folder (<class>/<image>)");
    auto parent = name.rfind('/', slash - 1);
    std::string cls = parent == std::string::npos ? name.substr(0, slash) : name.substr(parent + 1, slash - parent - 1);
    std::string this_root = parent == std::string::npos ? "" : name.substr(0, parent);
    if (!have_root) {
      root = this_root;
      have_root = true;
    } else if (this_root != root) {
      fail_file(path, "member " + name + " is under '" + this_root + "/' but earlier images are under '" + root +
                          "/': the archive must hold one split");
    }
    int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
    if (size > kMaxImageBytes) fail_file(path, "member " + name + ": " + std::to_string(size) + " bytes is too large for an image");
    Member m{name, cls, {}};
    m.bytes.reserve(size > 0 ? static_cast<size_t>(size) : 0);
    uint8_t buf[1 << 16];
    while (true) {
      la_ssize_t n = archive_read_data(a, buf, sizeof buf);
      if (n < 0) fail_file(path, "member " + name + ": corrupt archive data: " + archive_error_text(a));
      if (n == 0) break;
      if (static_cast<int64_t>(m.bytes.size()) + n > kMaxImageBytes) fail_file(path, "member " + name + ": too large for an image");
      m.bytes.insert(m.bytes.end(), buf, buf + n);
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<std::string> class_order(const std::vector<Member>& members) {
  std::set<std::string> folders;
  for (auto& m : members) folders.insert(m.cls);
  const auto& cifar = cifar10_class_names();
  if (folders == std::set<std::string>(cifar.begin(), cifar.end())) return cifar;
  return {folders.begin(), folders.end()};  // std::set iterates sorted
}

// Labels, decodes and stacks the images read from the archive.
ImageTreeImport import_members(std::vector<Member> members, std::string root, const std::string& archive_path,
                               const std::function<void(int64_t, int64_t)>& progress, int threads) {
  ImageTreeImport result;
  result.root = std::move(root);
  if (members.empty()) fail_file(archive_path, "holds no .jpg, .jpeg or .png images");

  std::vector<std::string> classes = class_order(members);
  std::map<std::string, int32_t> label_of;
  for (size_t i = 0; i < classes.size(); ++i) label_of[classes[i]] = static_cast<int32_t>(i);
  std::sort(members.begin(), members.end(), [&](const Member& a, const Member& b) {
    int la = label_of[a.cls], lb = label_of[b.cls];
    return la != lb ? la < lb : a.path < b.path;
  });
  for (size_t i = 1; i < members.size(); ++i)
    if (members[i].path == members[i - 1].path) fail_file(archive_path, "member " + members[i].path + " appears twice");

  // Decode in parallel. Each image lands in its own slot and every image is
  // tried, so the error reported (the first in record order) does not depend
  // on timing.
  const int64_t n = static_cast<int64_t>(members.size());
  std::vector<RgbImage> decoded(members.size());
  std::vector<std::string> errors(members.size());
  std::atomic<int64_t> next{0}, done{0};
  auto work = [&] {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      try {
        decoded[i] = decode_image(members[i].bytes);
        std::vector<uint8_t>().swap(members[i].bytes);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
      done.fetch_add(1);
    }
  };
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work);
  if (progress) {
    // The calling thread reports progress; one more worker takes its place.
    std::thread extra(work);
    int64_t last = -1;
    while (done.load() < n) {
      int64_t d = done.load();
      if (d != last) progress(d, n), last = d;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    extra.join();
  } else {
    work();
  }
  for (auto& t : pool) t.join();
  for (int64_t i = 0; i < n; ++i)
    if (!errors[i].empty()) fail_file(archive_path, "member " + members[i].path + ": " + errors[i]);
  if (progress) progress(n, n);

  const int w = decoded[0].width, h = decoded[0].height;
  LabeledImages& out = result.data;
  out.images = Tensor(ElemType::u8, {n, h, w, 3});
  out.labels = Tensor(ElemType::i32, {n});
  out.class_names = classes;
  const size_t per = static_cast<size_t>(w) * h * 3;
  for (int64_t i = 0; i < n; ++i) {
    if (decoded[i].width != w || decoded[i].height != h)
      fail_file(archive_path, "member " + members[i].path + " is " + std::to_string(decoded[i].width) + "x" +
                                  std::to_string(decoded[i].height) + " but " + members[0].path + " is " +
                                  std::to_string(w) + "x" + std::to_string(h) + ": all images must have one size");
    std::memcpy(out.images.data<uint8_t>() + i * per, decoded[i].pixels.data(), per);
    out.labels.data<int32_t>()[i] = label_of[members[i].cls];
    result.members.push_back(std::move(members[i].path));
  }
  return result;
}

}  // namespace

ImageTreeImport import_image_tree(const std::string& archive_path,
                                  const std::function<void(int64_t, int64_t)>& progress, int threads) {
  TarReader a = open_tar_file(archive_path);
  std::string root;
  std::vector<Member> members = read_members(a.get(), archive_path, root);
  return import_members(std::move(members), std::move(root), archive_path, progress, threads);
}

ImageTreeImport import_image_tree_from_memory(std::span<const uint8_t> archive_bytes, const std::string& name,
                                              const std::function<void(int64_t, int64_t)>& progress, int threads) {
  TarReader a = open_tar_memory(archive_bytes, name);
  std::string root;
  std::vector<Member> members = read_members(a.get(), name, root);
  return import_members(std::move(members), std::move(root), name, progress, threads);
}

}  // namespace kiln::data
