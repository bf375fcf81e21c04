#include "boot/image_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::boot {

ImageFile::ImageFile(std::string what, std::string path)
    : what_(std::move(what)), path_(std::move(path)) {
  auto fail = [&](int err) { return UsageError(errno_message(what_ + " " + path_, err)); };
  fd_.reset(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd_) throw fail(errno);
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) throw fail(errno);
  if (S_ISDIR(st.st_mode)) throw fail(EISDIR);
  if (!S_ISREG(st.st_mode))
    throw UsageError(fmt::format("{} {}: not a regular file", what_, path_));
  size_ = static_cast<uint64_t>(st.st_size);
}

void ImageFile::read_at(uint64_t offset, std::span<uint8_t> out) const {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n =
        ::pread(fd_.get(), out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw UsageError(errno_message(what_ + " " + path_));
    }
    if (n == 0)
      throw UsageError(fmt::format("{} {}: truncated while reading (ends before byte {:#x})", what_,
                                   path_, offset + out.size()));
    done += static_cast<size_t>(n);
  }
}

std::vector<uint8_t> ImageFile::read_head(uint64_t offset, uint64_t len) const {
  if (offset >= size_) return {};
  std::vector<uint8_t> data(static_cast<size_t>(std::min(len, size_ - offset)));
  read_at(offset, data);
  return data;
}

std::string format_size(uint64_t bytes) {
  constexpr uint64_t kKiB = 1024, kMiB = kKiB * 1024, kGiB = kMiB * 1024;
  auto scaled = [&](uint64_t unit, const char* name) {
    if (bytes % unit == 0) return fmt::format("{} {}", bytes / unit, name);
    return fmt::format("{:.1f} {}", static_cast<double>(bytes) / static_cast<double>(unit), name);
  };
  if (bytes >= kGiB) return scaled(kGiB, "GiB");
  if (bytes >= kMiB) return scaled(kMiB, "MiB");
  if (bytes >= kKiB) return scaled(kKiB, "KiB");
  return fmt::format("{} bytes", bytes);
}

std::string describe_ram(const GuestMemory& mem) {
  std::string out;
  for (const GuestRegion& r : mem.regions()) {
    if (!out.empty()) out += ' ';
    out += fmt::format("[{:#x}, {:#x})", r.base, r.end());
  }
  return out;
}

}  // namespace kiln::boot
