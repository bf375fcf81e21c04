// Names and attributes: LOOKUP, GETATTR, SETATTR, READLINK, SYMLINK, MKNOD, MKDIR, UNLINK,
// RMDIR, RENAME, RENAME2, LINK, ACCESS. Every name is one checked component resolved under its
// parent's O_PATH fd (fuse_server.h).
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "devices/virtio/fs/fuse_server.h"

namespace kiln::virtio {

using fs::Inode;

namespace {

int stat_inode(const Inode& node, struct stat& st) {
  return ::fstatat(node.fd.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

}  // namespace

int64_t FuseServer::op_lookup(Req& r) {
  const Inode* dir = inode(r.h.nodeid);
  if (!dir) return -ESTALE;
  if (const int err = read_name(r, name_)) return err;
  fuse_entry_out e{};
  if (const int err = lookup_entry(dir->fd.get(), name_, e)) return err;
  return reply(r, e);
}

int64_t FuseServer::op_getattr(Req& r) {
  const Inode* node = inode(r.h.nodeid);
  if (!node) return -ESTALE;
  struct stat st {};
  if (const int err = stat_inode(*node, st)) return err;
  fuse_attr_out out{};
  out.attr_valid = entry_valid();
  fill_attr(out.attr, st);
  return reply(r, out);
}

// Owners: Kiln serves the share as its own user with no id mapping, so a change of owner or
// group is carried out only when it changes nothing, or when Kiln runs as root and the share
// allows set-id files and devices (then the guest's root owns the share's ids). Else EPERM.
int FuseServer::set_owner(const Inode& node, const fuse_setattr_in& in, const struct stat& st) {
  const bool uid = (in.valid & FATTR_UID) && in.uid != st.st_uid;
  const bool gid = (in.valid & FATTR_GID) && in.gid != st.st_gid;
  if (!uid && !gid) return 0;
  if (!(options_.allow_setid_and_devices && ::geteuid() == 0)) return -EPERM;
  if (::fchownat(node.fd.get(), "", uid ? in.uid : static_cast<uid_t>(-1),
                 gid ? in.gid : static_cast<gid_t>(-1), AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
    return -errno;
  return 0;
}

int64_t FuseServer::op_setattr(Req& r) {
  fuse_setattr_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  const Inode* node = inode(r.h.nodeid);
  if (!node) return -ESTALE;
  if (options_.read_only) return -EROFS;
  struct stat st {};
  if (const int err = stat_inode(*node, st)) return err;
  const fs::Handle* h = nullptr;
  if (in.valid & FATTR_FH) {
    h = handles_.get(in.fh);
    if (!h || h->dir) return -EBADF;
  }
  const std::string self = fd_name(node->fd.get());
  const bool is_link = node->type == S_IFLNK;

  if (in.valid & FATTR_MODE) {
    if (is_link) return -EOPNOTSUPP;
    const mode_t mode = strip_setid(in.mode & 07777);
    // Through the magic link: for a non-symlink it names this inode itself.
    if (::fchmodat(proc_fd_.get(), self.c_str(), mode, 0) < 0) return -errno;
  }
  if (const int err = set_owner(*node, in, st)) return err;
  if (in.valid & FATTR_SIZE) {
    if (node->type != S_IFREG) return node->type == S_IFDIR ? -EISDIR : -EINVAL;
    int ret;
    if (h && h->writable) {
      ret = ::ftruncate(h->fd.get(), static_cast<off_t>(in.size));
    } else {
      UniqueFd fd;
      if (const int err = reopen(*node, O_WRONLY, fd)) return err;
      ret = ::ftruncate(fd.get(), static_cast<off_t>(in.size));
    }
    if (ret < 0) return -errno;
  }
  if (in.valid & (FATTR_ATIME | FATTR_MTIME)) {
    timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    if (in.valid & FATTR_ATIME)
      ts[0] = (in.valid & FATTR_ATIME_NOW)
                  ? timespec{0, UTIME_NOW}
                  : timespec{static_cast<time_t>(in.atime), static_cast<long>(in.atimensec)};
    if (in.valid & FATTR_MTIME)
      ts[1] = (in.valid & FATTR_MTIME_NOW)
                  ? timespec{0, UTIME_NOW}
                  : timespec{static_cast<time_t>(in.mtime), static_cast<long>(in.mtimensec)};
    if (ts[0].tv_nsec != UTIME_NOW && ts[0].tv_nsec != UTIME_OMIT && ts[0].tv_nsec >= 1000000000)
      return -EINVAL;
    if (ts[1].tv_nsec != UTIME_NOW && ts[1].tv_nsec != UTIME_OMIT && ts[1].tv_nsec >= 1000000000)
      return -EINVAL;
    if (is_link) return -EOPNOTSUPP;  // a symlink's own times need its parent and name
    if ((h ? ::futimens(h->fd.get(), ts) : ::utimensat(proc_fd_.get(), self.c_str(), ts, 0)) < 0)
      return -errno;
  }
  if (const int err = stat_inode(*node, st)) return err;
  fuse_attr_out out{};
  out.attr_valid = entry_valid();
  fill_attr(out.attr, st);
  return reply(r, out);
}

int64_t FuseServer::op_readlink(Req& r) {
  const Inode* node = inode(r.h.nodeid);
  if (!node) return -ESTALE;
  if (node->type != S_IFLNK) return -EINVAL;
  char target[PATH_MAX];
  const ssize_t n = ::readlinkat(node->fd.get(), "", target, sizeof(target));
  if (n < 0) return -errno;
  if (!r.out.write_at(kOutHdr, target, static_cast<size_t>(n))) return -ERANGE;
  return n;
}

int64_t FuseServer::op_symlink(Req& r) {
  // Arguments: the new entry's name, then the link's target (any bytes but NUL: only the
  // guest ever follows it).
  const Inode* dir = inode(r.h.nodeid);
  if (!dir) return -ESTALE;
  if (const int err = read_name(r, name_)) return err;
  if (!r.in.read_cstring(name2_, kMaxSymlinkTarget)) return -ENAMETOOLONG;
  if (name2_.empty()) return -ENOENT;
  if (options_.read_only) return -EROFS;
  if (::symlinkat(name2_.c_str(), dir->fd.get(), name_.c_str()) < 0) return -errno;
  fuse_entry_out e{};
  if (const int err = lookup_entry(dir->fd.get(), name_, e)) return err;
  return reply(r, e);
}

int64_t FuseServer::op_mknod(Req& r) {
  fuse_mknod_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  const Inode* dir = inode(r.h.nodeid);
  if (!dir) return -ESTALE;
  if (const int err = read_name(r, name_)) return err;
  if (options_.read_only) return -EROFS;
  const mode_t type = (in.mode & S_IFMT) ? (in.mode & S_IFMT) : S_IFREG;  // mknod(2): 0 is S_IFREG
  dev_t rdev = 0;
  switch (type) {
    case S_IFREG:
    case S_IFIFO:
    case S_IFSOCK:
      break;
    case S_IFCHR:
    case S_IFBLK:
      if (!options_.allow_setid_and_devices) return -EPERM;
      rdev = in.rdev;
      break;
    default:
      return -EINVAL;
  }
  const mode_t perm = strip_setid(in.mode & 07777);
  if (::mknodat(dir->fd.get(), name_.c_str(), type | perm, rdev) < 0) return -errno;
  fuse_entry_out e{};
  if (const int err = lookup_entry(dir->fd.get(), name_, e)) return err;
  // The process umask may have taken bits the guest asked for (it applied its own umask).
  if ((e.attr.mode & 07777) != perm && type != S_IFSOCK) {
    const Inode* node = inode(e.nodeid);
    if (node && ::fchmodat(proc_fd_.get(), fd_name(node->fd.get()).c_str(), perm, 0) == 0)
      e.attr.mode = type | perm;
  }
  return reply(r, e);
}

int64_t FuseServer::op_mkdir(Req& r) {
  fuse_mkdir_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  const Inode* dir = inode(r.h.nodeid);
  if (!dir) return -ESTALE;
  if (const int err = read_name(r, name_)) return err;
  if (options_.read_only) return -EROFS;
  const mode_t perm = strip_setid(in.mode & 07777);
  if (::mkdirat(dir->fd.get(), name_.c_str(), perm) < 0) return -errno;
  fuse_entry_out e{};
  if (const int err = lookup_entry(dir->fd.get(), name_, e)) return err;
  if ((e.attr.mode & 07777) != perm) {
    const Inode* node = inode(e.nodeid);
    if (node && node->type == S_IFDIR &&
        ::fchmodat(proc_fd_.get(), fd_name(node->fd.get()).c_str(), perm, 0) == 0)
      e.attr.mode = S_IFDIR | perm;
  }
  return reply(r, e);
}

int64_t FuseServer::op_unlink(Req& r, bool dir_entry) {
  const Inode* dir = inode(r.h.nodeid);
  if (!dir) return -ESTALE;
  if (const int err = read_name(r, name_)) return err;
  if (options_.read_only) return -EROFS;
  if (::unlinkat(dir->fd.get(), name_.c_str(), dir_entry ? AT_REMOVEDIR : 0) < 0) return -errno;
  return 0;
}

int64_t FuseServer::op_rename(Req& r, bool with_flags) {
  uint64_t newdir = 0;
  uint32_t flags = 0;
  if (with_flags) {
    fuse_rename2_in in{};
    if (!r.in.read_obj(in)) return -EINVAL;
    newdir = in.newdir;
    flags = in.flags;
  } else {
    fuse_rename_in in{};
    if (!r.in.read_obj(in)) return -EINVAL;
    newdir = in.newdir;
  }
  const Inode* from = inode(r.h.nodeid);
  const Inode* to = inode(newdir);
  if (!from || !to) return -ESTALE;
  if (const int err = read_name(r, name_)) return err;
  if (const int err = read_name(r, name2_)) return err;
  // RENAME_WHITEOUT would create a character device: refused like MKNOD of one.
  if (flags & ~uint32_t{RENAME_NOREPLACE | RENAME_EXCHANGE}) return -EINVAL;
  if (options_.read_only) return -EROFS;
  if (::renameat2(from->fd.get(), name_.c_str(), to->fd.get(), name2_.c_str(), flags) < 0)
    return -errno;
  return 0;
}

int64_t FuseServer::op_link(Req& r) {
  fuse_link_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  const Inode* dir = inode(r.h.nodeid);
  const Inode* target = inode(in.oldnodeid);
  if (!dir || !target) return -ESTALE;
  if (const int err = read_name(r, name_)) return err;
  if (options_.read_only) return -EROFS;
  if (target->type == S_IFDIR) return -EPERM;
  // linkat through the inode's magic link (AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH): it
  // links the inode the fd holds, whatever its type; nothing past it is followed.
  if (::linkat(proc_fd_.get(), fd_name(target->fd.get()).c_str(), dir->fd.get(), name_.c_str(),
               AT_SYMLINK_FOLLOW) < 0)
    return -errno;
  fuse_entry_out e{};
  if (const int err = lookup_entry(dir->fd.get(), name_, e)) return err;
  return reply(r, e);
}

int64_t FuseServer::op_access(Req& r) {
  fuse_access_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  const Inode* node = inode(r.h.nodeid);
  if (!node) return -ESTALE;
  const int mask = static_cast<int>(in.mask & (R_OK | W_OK | X_OK));
  if ((mask & W_OK) && options_.read_only) return -EROFS;
  // Checked as Kiln's own user (the guest's kernel checks the guest's ids itself).
  if (::faccessat(node->fd.get(), "", mask, AT_EMPTY_PATH | AT_EACCESS) < 0) return -errno;
  return 0;
}

}  // namespace kiln::virtio
