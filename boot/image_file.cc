#include "boot/image_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "vmm/error.h"
#include "vmm/unique_fd.h"

namespace kiln::boot {

std::vector<uint8_t> read_image_file(const std::string& what, const std::string& path) {
  auto fail = [&](int err) { return UsageError(errno_message(what + " " + path, err)); };
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw fail(errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw fail(errno);
  if (S_ISDIR(st.st_mode)) throw fail(EISDIR);
  if (!S_ISREG(st.st_mode)) throw UsageError(fmt::format("{} {}: not a regular file", what, path));

  std::vector<uint8_t> data(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::read(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw fail(errno);
    }
    if (n == 0) break;  // the file shrank while we read it
    done += static_cast<size_t>(n);
  }
  if (done != data.size())
    throw UsageError(fmt::format("{} {}: truncated while reading ({} of {} bytes)", what, path,
                                 done, data.size()));
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
