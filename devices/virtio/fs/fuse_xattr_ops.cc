// Extended attributes: GETXATTR, LISTXATTR, SETXATTR, REMOVEXATTR, for the "user." namespace
// only. "security.", "trusted." and "system." (ACLs, capabilities, SELinux labels) would let
// the guest set what the host trusts or enforces, so they are not passed: reads of them find
// nothing (ENODATA), writes are refused (EPERM), and LISTXATTR shows user.* names only.
// Regular files and directories only, through the inode's /proc/self/fd path (which names that
// inode, as for re-opening); symlinks and special files answer EPERM, as Linux does for user.*.
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cerrno>
#include <cstring>

#include "devices/virtio/fs/fuse_server.h"

namespace kiln::virtio {

namespace {

constexpr size_t kXattrNameMax = 255;

bool user_namespace(const std::string& name) {
  return name.size() > 5 && name.compare(0, 5, "user.") == 0;
}

std::string proc_path(int fd) {
  return "/proc/self/fd/" + std::to_string(fd);
}

bool xattr_capable(const fs::Inode& node) {
  return node.type == S_IFREG || node.type == S_IFDIR;
}

}  // namespace

int64_t FuseServer::op_getxattr(Req& r, bool list) {
  fuse_getxattr_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  const fs::Inode* node = inode(r.h.nodeid);
  if (!node) return -ESTALE;
  if (!list) {
    if (!r.in.read_cstring(name_, kXattrNameMax)) return -ERANGE;
    if (!user_namespace(name_)) return -ENODATA;
  }
  if (!xattr_capable(*node)) return list ? 0 : -ENODATA;
  const std::string path = proc_path(node->fd.get());
  const size_t cap = list ? kMaxXattrList : kMaxXattrSize;
  buf_.resize(cap);
  const ssize_t n = list ? ::listxattr(path.c_str(), reinterpret_cast<char*>(buf_.data()), cap)
                         : ::getxattr(path.c_str(), name_.c_str(), buf_.data(), cap);
  if (n < 0) return errno == ERANGE ? -E2BIG : -errno;
  size_t len = static_cast<size_t>(n);
  if (list) {  // keep the user.* names
    size_t kept = 0;
    for (size_t pos = 0; pos < len;) {
      const size_t l = strnlen(reinterpret_cast<char*>(buf_.data()) + pos, len - pos);
      if (user_namespace(std::string(reinterpret_cast<char*>(buf_.data()) + pos, l))) {
        std::memmove(buf_.data() + kept, buf_.data() + pos, l + 1 <= len - pos ? l + 1 : l);
        kept += l + 1;
      }
      pos += l + 1;
    }
    len = std::min(kept, len);
  }
  if (in.size == 0) {
    fuse_getxattr_out out{};
    out.size = static_cast<uint32_t>(len);
    return reply(r, out);
  }
  if (len > in.size) return -ERANGE;
  if (!r.out.write_at(kOutHdr, buf_.data(), len)) return -ERANGE;
  return static_cast<int64_t>(len);
}

int64_t FuseServer::op_setxattr(Req& r) {
  uint32_t size = 0, flags = 0;  // fuse_setxattr_in without SETXATTR_EXT: 8 bytes
  if (!r.in.read_obj(size) || !r.in.read_obj(flags)) return -EINVAL;
  const fs::Inode* node = inode(r.h.nodeid);
  if (!node) return -ESTALE;
  if (!r.in.read_cstring(name_, kXattrNameMax)) return -ERANGE;
  if (size > kMaxXattrSize) return -E2BIG;
  if (size > r.in.remaining()) return -EINVAL;
  if (flags & ~uint32_t{XATTR_CREATE | XATTR_REPLACE}) return -EINVAL;
  if (options_.read_only) return -EROFS;
  if (!user_namespace(name_) || !xattr_capable(*node)) return -EPERM;
  buf_.resize(size);
  r.in.read(buf_.data(), size);
  if (::setxattr(proc_path(node->fd.get()).c_str(), name_.c_str(), buf_.data(), size,
                 static_cast<int>(flags)) < 0)
    return -errno;
  return 0;
}

int64_t FuseServer::op_removexattr(Req& r) {
  const fs::Inode* node = inode(r.h.nodeid);
  if (!node) return -ESTALE;
  if (!r.in.read_cstring(name_, kXattrNameMax)) return -ERANGE;
  if (options_.read_only) return -EROFS;
  if (!user_namespace(name_) || !xattr_capable(*node)) return -ENODATA;
  if (::removexattr(proc_path(node->fd.get()).c_str(), name_.c_str()) < 0) return -errno;
  return 0;
}

}  // namespace kiln::virtio
