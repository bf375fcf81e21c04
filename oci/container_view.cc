#include "oci/container_view.h"

#include <fcntl.h>
#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "oci/mount_points.h"

namespace kiln::oci {

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw Error("the container's mount namespace: " + what + ": " + std::strerror(errno));
}

std::string fd_path(const UniqueFd& fd) {
  return "/proc/self/fd/" + std::to_string(fd.get());
}

// Binds host path `source` on `target` of the root (resolved inside it), read-only if asked.
// A target that does not exist lies under a file system only the guest has: skipped.
void bind_in_root(int root, const std::string& source, const std::string& target, bool ro) {
  UniqueFd at = open_in_root(root, target);
  if (!at) {
    if (errno == ENOENT) return;
    fail("open " + target);
  }
  if (mount(source.c_str(), fd_path(at).c_str(), nullptr, MS_BIND | MS_REC, nullptr) < 0)
    fail("bind " + source + " on " + target);
  if (!ro) return;
  UniqueFd top = open_in_root(root, target);  // now the bind mount itself
  if (!top ||
      mount(nullptr, fd_path(top).c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) < 0)
    fail("make " + target + " read-only");
}

}  // namespace

void enter_container_view(const Bundle& b, bool no_pivot) {
  if (unshare(CLONE_NEWNS) < 0) {
    if (errno != EPERM) fail("unshare");
    spdlog::warn(
        "cannot make a mount namespace for container's host process (no CAP_SYS_ADMIN): it "
        "stays in the caller's, where an engine's cp into the running container would reach "
        "the caller's root, not the container's");
    return;
  }
  // Nothing mounted here reaches the host; the host's later mounts still arrive.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) < 0) fail("make / a slave");
  const char* root = b.rootfs.c_str();
  if (mount(root, root, nullptr, MS_BIND | MS_REC, nullptr) < 0) fail("bind " + b.rootfs);
  UniqueFd dir(open(root, O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) fail("open " + b.rootfs);
  for (const auto& v : b.run.volumes) bind_in_root(dir.get(), v.host, v.guest, v.read_only);
  for (const auto& f : b.run.files) bind_in_root(dir.get(), f.host, f.guest, true);
  if (b.read_only && mount(nullptr, root, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) < 0)
    fail("make " + b.rootfs + " read-only");
  if (chdir(root) < 0) fail("chdir " + b.rootfs);
  if (no_pivot) {
    // Moved onto "/" (where a process that joins the namespace lands) and chrooted into.
    if (mount(".", "/", nullptr, MS_MOVE, nullptr) < 0) fail("move " + b.rootfs + " onto /");
    if (chroot(".") < 0) fail("chroot");
  } else {
    // The root's bind becomes "/", the old root is detached (pivot_root(".", "."), as runc).
    if (syscall(SYS_pivot_root, ".", ".") < 0) fail("pivot_root");
    if (umount2(".", MNT_DETACH) < 0) fail("detach the old root");
  }
  if (chdir("/") < 0) fail("chdir /");
}

}  // namespace kiln::oci
