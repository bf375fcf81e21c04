// The jailer's steps (Firecracker jailer's order, but the cgroup first), each failing with a
// message that names it: close inherited fds, the cgroup (jail/cgroup.cc), make the jail
// directory and copy the executable in, resource limits, join the network namespace, a new mount
// namespace pivoted into the jail with /dev/kvm, /dev/net/tun, /dev/urandom and /dev/userfaultfd
// (those the host has), everything owned by uid:gid, optionally setsid() and a new PID namespace,
// then the ids dropped and the executable exec'd with an empty environment.
#pragma once

#include "jail/jail_options.h"

namespace kiln::jail {

// Does not return: execs the executable, or throws kiln::UsageError (the request cannot work:
// not root, a dynamically linked executable) or kiln::Error (a step failed).
[[noreturn]] void run_jailed(const JailOptions& options);

}  // namespace kiln::jail
