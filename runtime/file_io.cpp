#include "runtime/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace kiln {

void fail_file(const std::string& path, const std::string& what) { throw FileError(path + ": " + what); }

namespace {

std::string errno_text() { return std::strerror(errno); }

// Closes a file descriptor on scope exit unless released.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) fail_file(path, "cannot open (" + errno_text() + ")");
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail_file(path, "cannot stat (" + errno_text() + ")");
  if (!S_ISREG(st.st_mode)) fail_file(path, "not a regular file");
  std::vector<uint8_t> out(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::read(f.fd, out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_file(path, "read failed (" + errno_text() + ")");
    if (n == 0) fail_file(path, "file shrank while being read");
    got += static_cast<size_t>(n);
  }
  return out;
}

void write_file_atomic(const std::string& path, std::span<const uint8_t> bytes,
                       const std::function<void(size_t)>& after_chunk) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  try {
    Fd f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (f.fd < 0) fail_file(tmp, "cannot create (" + errno_text() + ")");
    constexpr size_t kChunk = size_t{1} << 20;
    size_t done = 0;
    while (done < bytes.size()) {
      size_t want = std::min(kChunk, bytes.size() - done);
      ssize_t n = ::write(f.fd, bytes.data() + done, want);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail_file(tmp, "write failed (" + errno_text() + ")");
      done += static_cast<size_t>(n);
      if (after_chunk) after_chunk(done);
    }
    if (::fsync(f.fd) != 0) fail_file(tmp, "fsync failed (" + errno_text() + ")");
    int fd = f.fd;
    f.fd = -1;
    if (::close(fd) != 0) fail_file(tmp, "close failed (" + errno_text() + ")");
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      fail_file(path, "cannot rename " + tmp + " over it (" + errno_text() + ")");
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  // Make the rename itself durable.
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  Fd d{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (d.fd >= 0 && ::fsync(d.fd) != 0 && errno != EINVAL)
    fail_file(dir, "fsync of directory failed (" + errno_text() + ")");
}

}  // namespace kiln
