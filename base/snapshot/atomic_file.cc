#include "base/snapshot/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::snapshot {

namespace {

// The temporary file, removed unless it was renamed into place.
struct TempPath {
  std::string path;
  bool kept = false;
  ~TempPath() {
    if (!kept && !path.empty()) ::unlink(path.c_str());
  }
};

}  // namespace

void write_all(int fd, std::span<const uint8_t> bytes, const std::string& what, int64_t offset) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = offset < 0
                          ? ::write(fd, bytes.data() + done, bytes.size() - done)
                          : ::pwrite(fd, bytes.data() + done, bytes.size() - done,
                                     static_cast<off_t>(offset + static_cast<int64_t>(done)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw_errno("write " + what);
    done += static_cast<size_t>(n);
  }
}

void replace_file_atomically(const std::string& path, const std::string& what,
                             const std::function<void(int fd)>& fill) {
  const std::filesystem::path target(path);
  const std::string dir = target.has_parent_path() ? target.parent_path().string() : ".";
  TempPath tmp{
      (std::filesystem::path(dir) / ("." + target.filename().string() + ".XXXXXX")).string()};
  UniqueFd fd(::mkostemp(tmp.path.data(), O_CLOEXEC));
  if (!fd) {
    tmp.path.clear();
    throw_errno(what + ": create a temporary file in " + dir);
  }
  fill(fd.get());
  if (::fchmod(fd.get(), 0600) < 0 || ::fsync(fd.get()) < 0) throw_errno(what + ": " + tmp.path);
  fd.reset();
  if (::rename(tmp.path.c_str(), path.c_str()) < 0) throw_errno(what + ": rename into place");
  tmp.kept = true;
  UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d || ::fsync(d.get()) < 0) throw_errno(what + ": fsync " + dir);
}

}  // namespace kiln::snapshot
