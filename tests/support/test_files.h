// Small helpers shared by unit and end-to-end tests: temporary files and fd counting.
#pragma once

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::test {

// The whole of the file at `path` ("" if it does not open), read in 64 KiB blocks (also /proc
// files, whose size says 0): a byte-by-byte istreambuf_iterator copy of a 64 MiB snapshot took
// minutes under ASan in the nested VM.
inline std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string data;
  std::vector<char> block(1 << 16);
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    data.append(block.data(), static_cast<size_t>(in.gcount()));
  }
  return data;
}

// A file in $TMPDIR (or /tmp) holding `contents`, removed on destruction.
class TempFile {
 public:
  explicit TempFile(std::string_view contents) { create(contents); }
  explicit TempFile(const std::vector<uint8_t>& bytes)
      : TempFile(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size())) {}
  ~TempFile() { ::unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  void create(std::string_view contents) {
    const char* dir = std::getenv("TMPDIR");
    std::string name = std::string(dir && *dir ? dir : "/tmp") + "/kiln-test-XXXXXX";
    const int fd = ::mkstemp(name.data());
    if (fd < 0) throw std::runtime_error("mkstemp failed in " + name);
    size_t done = 0;
    while (done < contents.size()) {
      const ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::close(fd);
    path_ = name;
    if (done != contents.size()) throw std::runtime_error("short write to " + name);
  }
  std::string path_;
};

// A fresh directory in $TMPDIR (or /tmp), removed with what it holds on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& stem = "kiln-test") {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir && *dir ? dir : "/tmp") + "/" + stem + "-XXXXXX";
    if (!::mkdtemp(path_.data())) throw std::runtime_error("mkdtemp failed in " + path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Open file descriptors of this process.
inline int count_open_fds() {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return -1;
  while (dirent* e = ::readdir(dir)) n += e->d_name[0] != '.';
  ::closedir(dir);
  return n - 1;  // the DIR's own fd
}

}  // namespace kiln::test
