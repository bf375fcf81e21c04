// The mount points of a container's mounts, made in its root on the host before the guest
// boots (as runc makes them before it mounts): a directory for each volume and tmpfs, an empty
// file for each file bind. The guest could not make them in a read-only root. Those that lie
// under a file system the guest makes itself (/dev, /proc, /sys, /run, /tmp) or under one of
// the container's tmpfs are left to the guest, which makes them there.
#pragma once

#include <string>

#include "base/unique_fd.h"
#include "sandbox/commands.h"

namespace kiln::oci {

// `path` (relative to directory `root`) opened O_PATH, every component (symbolic links too)
// resolved inside `root`; an empty UniqueFd with errno set if it cannot be.
UniqueFd open_in_root(int root, const std::string& path);

// Makes what is missing; every path is resolved inside `rootfs` (its symbolic links cannot
// lead out). Throws kiln::UsageError naming the mount whose point cannot be made.
void make_mount_points(const std::string& rootfs, const sandbox::RunOptions& run);

}  // namespace kiln::oci
