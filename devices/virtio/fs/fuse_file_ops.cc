// Open files: OPEN, OPENDIR, CREATE, READ, WRITE, RELEASE(DIR), FSYNC(DIR), FLUSH, FALLOCATE,
// LSEEK, COPY_FILE_RANGE. READ and WRITE move the data between the host file and guest memory
// with preadv/pwritev on the chain's own iovecs.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "devices/virtio/chain_io.h"
#include "devices/virtio/fs/fuse_server.h"

namespace kiln::virtio {

using fs::Handle;
using fs::Inode;

// The host open flags for the guest's: access mode and the flags that only change how I/O
// behaves; never O_CREAT/O_EXCL (CREATE does that), O_PATH, O_TMPFILE, O_NOATIME (needs
// ownership) or O_DIRECT (the host's page cache serves the guest). A read-only share refuses
// write access and O_TRUNC.
int FuseServer::sanitize_open_flags(uint32_t guest, bool dir, int& host) const {
  const int flags = static_cast<int>(guest);
  const int acc = flags & O_ACCMODE;
  if (acc == O_ACCMODE) return -EINVAL;
  if (options_.read_only && (acc != O_RDONLY || (flags & O_TRUNC))) return -EROFS;
  if (dir) {
    if (acc != O_RDONLY) return -EISDIR;
    host = O_RDONLY | O_DIRECTORY;
    return 0;
  }
  host = flags & (O_ACCMODE | O_APPEND | O_TRUNC | O_NONBLOCK | O_SYNC | O_DSYNC);
  return 0;
}

int64_t FuseServer::op_open(Req& r, bool dir) {
  fuse_open_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  const Inode* node = inode(r.h.nodeid);
  if (!node) return -ESTALE;
  int flags = 0;
  if (const int err = sanitize_open_flags(in.flags, dir, flags)) return err;
  if (dir && node->type != S_IFDIR) return -ENOTDIR;
  if (!dir && node->type == S_IFDIR) return -EISDIR;
  if (handles_.full()) return -EMFILE;
  UniqueFd fd;
  if (const int err = reopen(*node, flags, fd)) return err;
  fuse_open_out out{};
  out.fh = handles_.add(std::move(fd), dir, (flags & O_ACCMODE) != O_RDONLY);
  out.open_flags = open_flags(dir);
  return reply(r, out);
}

int64_t FuseServer::op_create(Req& r) {
  fuse_create_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  const Inode* dir = inode(r.h.nodeid);
  if (!dir) return -ESTALE;
  if (const int err = read_name(r, name_)) return err;
  if (options_.read_only) return -EROFS;
  int flags = 0;
  if (const int err = sanitize_open_flags(in.flags, false, flags)) return err;
  if (handles_.full()) return -EMFILE;
  const mode_t perm = strip_setid(in.mode & 07777);
  // Created here (O_EXCL, never through a symlink) or, unless the guest asked for O_EXCL, the
  // regular file already there, re-opened like OPEN does.
  UniqueFd fd(::openat(dir->fd.get(), name_.c_str(),
                       flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, perm));
  if (fd) {
    struct stat st {};
    // The process umask may have taken bits the guest asked for (it applied its own umask).
    if (::fstat(fd.get(), &st) == 0 && (st.st_mode & 07777) != perm) ::fchmod(fd.get(), perm);
  } else {
    if (errno != EEXIST || (in.flags & O_EXCL)) return -errno;
    UniqueFd path_fd(::openat(dir->fd.get(), name_.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!path_fd) return -errno;
    struct stat st {};
    if (::fstat(path_fd.get(), &st) < 0) return -errno;
    Inode probe;
    probe.fd = std::move(path_fd);
    probe.type = st.st_mode & S_IFMT;
    if (probe.type == S_IFDIR) return -EISDIR;
    if (const int err = reopen(probe, flags, fd)) return err;
  }
  struct {
    fuse_entry_out entry;
    fuse_open_out open;
  } out{};
  if (const int err = entry_from_fd(fd.get(), out.entry)) return err;
  out.open.fh = handles_.add(std::move(fd), false, (flags & O_ACCMODE) != O_RDONLY);
  out.open.open_flags = open_flags(false);
  return reply(r, out);
}

int64_t FuseServer::op_read(Req& r) {
  fuse_read_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  Handle* h = handles_.get(in.fh);
  if (!h) return -EBADF;
  if (h->dir) return -EISDIR;
  if (in.size > kMaxIo || kOutHdr + in.size > r.out.capacity()) {
    log_bad(r, "READ larger than max_write or than its buffers");
    return -EINVAL;
  }
  iov_.clear();
  r.out.iovecs_at(kOutHdr, in.size, iov_);
  return file_transfer(h->fd.get(), false, iov_, in.offset);
}

int64_t FuseServer::op_write(Req& r) {
  fuse_write_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  if (in.size > kMaxIo || in.size > r.in.remaining()) {
    log_bad(r, "WRITE larger than max_write or than its data");
    return -EINVAL;
  }
  if (options_.read_only) return -EROFS;
  Handle* h = handles_.get(in.fh);
  if (!h || h->dir || !h->writable) return -EBADF;
  iov_.clear();
  r.in.take_iovecs(in.size, iov_);
  const int64_t n = file_transfer(h->fd.get(), true, iov_, in.offset);
  if (n < 0) return n;
  fuse_write_out out{};
  out.size = static_cast<uint32_t>(n);
  return reply(r, out);
}

int64_t FuseServer::op_release(Req& r, bool /*dir*/) {
  fuse_release_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  return handles_.remove(in.fh) ? 0 : -EBADF;
}

int64_t FuseServer::op_fsync(Req& r, bool dir) {
  fuse_fsync_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  Handle* h = handles_.get(in.fh);
  if (!h || h->dir != dir) return -EBADF;
  const int ret = (in.fsync_flags & 1) ? ::fdatasync(h->fd.get()) : ::fsync(h->fd.get());
  return ret < 0 ? -errno : 0;
}

int64_t FuseServer::op_flush(Req& r) {
  fuse_flush_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  return handles_.get(in.fh) ? 0 : -EBADF;  // no locks are kept, writes are not buffered
}

int64_t FuseServer::op_fallocate(Req& r) {
  fuse_fallocate_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  if (options_.read_only) return -EROFS;
  if (in.mode & ~uint32_t{FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE})
    return -EOPNOTSUPP;
  Handle* h = handles_.get(in.fh);
  if (!h || h->dir || !h->writable) return -EBADF;
  if (in.offset > INT64_MAX || in.length > INT64_MAX) return -EFBIG;
  if (::fallocate(h->fd.get(), static_cast<int>(in.mode), static_cast<off_t>(in.offset),
                  static_cast<off_t>(in.length)) < 0)
    return -errno;
  return 0;
}

int64_t FuseServer::op_lseek(Req& r) {
  fuse_lseek_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  Handle* h = handles_.get(in.fh);
  if (!h || h->dir) return -EBADF;
  if (in.whence != SEEK_DATA && in.whence != SEEK_HOLE) return -EINVAL;
  if (in.offset > INT64_MAX) return -ENXIO;
  const off_t off =
      ::lseek(h->fd.get(), static_cast<off_t>(in.offset), static_cast<int>(in.whence));
  if (off < 0) return -errno;
  fuse_lseek_out out{};
  out.offset = static_cast<uint64_t>(off);
  return reply(r, out);
}

int64_t FuseServer::op_copy_file_range(Req& r) {
  fuse_copy_file_range_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  if (options_.read_only) return -EROFS;
  if (in.flags != 0) return -EINVAL;
  Handle* src = handles_.get(in.fh_in);
  Handle* dst = handles_.get(in.fh_out);
  if (!src || !dst || src->dir || dst->dir || !dst->writable) return -EBADF;
  if (in.off_in > INT64_MAX || in.off_out > INT64_MAX) return -EINVAL;
  loff_t off_in = static_cast<loff_t>(in.off_in), off_out = static_cast<loff_t>(in.off_out);
  const size_t len = static_cast<size_t>(std::min<uint64_t>(in.len, kMaxCopyRange));
  const ssize_t n = ::copy_file_range(src->fd.get(), &off_in, dst->fd.get(), &off_out, len, 0);
  if (n < 0) return -errno;
  fuse_write_out out{};
  out.size = static_cast<uint32_t>(n);
  return reply(r, out);
}

}  // namespace kiln::virtio
