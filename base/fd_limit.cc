#include "base/fd_limit.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace kiln {

namespace {

// The largest RLIMIT_NOFILE the kernel accepts (fs.nr_open); 1 << 20 (its default) if unknown.
uint64_t kernel_fd_ceiling() {
  std::ifstream in("/proc/sys/fs/nr_open");
  uint64_t value = 0;
  if (in >> value && value > 0) return value;
  return uint64_t{1} << 20;
}

}  // namespace

uint64_t fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) < 0) return 1024;  // the usual default
  return rl.rlim_cur == RLIM_INFINITY ? kernel_fd_ceiling() : rl.rlim_cur;
}

uint64_t raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) < 0) return fd_limit();
  rlim_t want = rl.rlim_max;
  if (want == RLIM_INFINITY || want > kernel_fd_ceiling()) want = kernel_fd_ceiling();
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
    const rlim_t before = rl.rlim_cur;
    rl.rlim_cur = want;
    if (::setrlimit(RLIMIT_NOFILE, &rl) < 0)
      spdlog::warn("cannot raise the open-file limit from {} to {}: {}", before, want,
                   std::strerror(errno));
  }
  return fd_limit();
}

}  // namespace kiln
