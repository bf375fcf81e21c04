// The container's host process (the pid an engine gets from --pid-file and `state`) lives in
// a mount namespace of its own whose root is the container's root on the host, with the
// container's volumes and file binds mounted in it as the guest has them. Engines join that
// namespace to reach the container's files (`podman cp` into a running container joins it and
// writes under "/"), so they reach what the guest sees through virtio-fs, never the host's
// root. Tmpfs mounts exist only in the guest: `cp` reaches the directories beneath them.
#pragma once

#include <string>

#include "oci/spec.h"

namespace kiln::oci {

// Makes the calling process's view (unshare, binds, pivot_root, or with `no_pivot` a move onto
// "/" and chroot); kiln::Error naming what failed. Without the privilege to unshare a mount
// namespace it keeps the caller's and warns.
void enter_container_view(const Bundle& b, bool no_pivot);

}  // namespace kiln::oci
