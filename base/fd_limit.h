// The process's open-file limit (RLIMIT_NOFILE): raised once at start-up, read by devices that
// budget their host fds from it (vsock connections).
#pragma once

#include <cstdint>

namespace kiln {

// Raises the soft RLIMIT_NOFILE to the hard limit (capped at what the kernel accepts,
// /proc/sys/fs/nr_open) and returns the soft limit now in force. Never fails: if the limit
// cannot be raised it stays as it was (logged) and that value is returned.
uint64_t raise_fd_limit();

// The soft RLIMIT_NOFILE now in force.
uint64_t fd_limit();

}  // namespace kiln
