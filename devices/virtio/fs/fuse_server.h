// A FUSE server (protocol 7.31 and later, what Linux's virtiofs driver speaks) passing one host
// directory through to a hostile guest. Requests arrive as the readable and writable iovecs of
// one descriptor chain and are answered synchronously into the writable part (READ and WRITE
// move data straight between guest memory and the host file with preadv/pwritev).
//
// What keeps the guest inside the shared directory (docs/ARCHITECTURE.md, "virtio-fs"):
//  - every name from the guest is one path component (no '/', no NUL, not "." or "..", at most
//    NAME_MAX bytes) and is resolved with openat(parent O_PATH fd, name, O_PATH|O_NOFOLLOW):
//    one step, never through a symlink;
//  - an inode is held as that O_PATH|O_NOFOLLOW fd; a regular file or directory is re-opened for
//    I/O through /proc/self/fd/N, whose magic link names that very inode (an inode's type never
//    changes, and the link is to the open file, not to a path, so nothing is walked); a symlink
//    is never re-opened (OPEN of it answers ELOOP), special files neither (ENXIO);
//  - renames and links are *at() calls on the share's own directory fds.
#pragma once

#include <linux/fuse.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/log_limiter.h"
#include "base/snapshot/bytes.h"
#include "base/unique_fd.h"
#include "devices/virtio/fs/fs_device.h"
#include "devices/virtio/fs/fuse_request.h"
#include "devices/virtio/fs/handle_table.h"
#include "devices/virtio/fs/inode_table.h"

namespace kiln::virtio {

struct FuseServerOptions {
  bool read_only = false;
  FsCache cache = FsCache::kAuto;
  bool allow_setid_and_devices = false;
  size_t max_inodes = size_t{1} << 20;
  size_t max_handles = size_t{1} << 16;
};

class FuseServer {
 public:
  static constexpr uint32_t kMinMinor = 31;
  static constexpr uint32_t kMaxIo = 1 << 20;             // max_write, READ size, readahead
  static constexpr uint32_t kMaxDirRead = 1 << 20;        // READDIR(PLUS) reply
  static constexpr uint64_t kMaxCopyRange = 16ull << 20;  // COPY_FILE_RANGE per request
  static constexpr uint32_t kMaxXattrSize = 64 * 1024;    // XATTR_SIZE_MAX
  static constexpr uint32_t kMaxXattrList = 64 * 1024;    // XATTR_LIST_MAX
  static constexpr size_t kMaxSymlinkTarget = 4095;       // PATH_MAX - 1

  // Opens `path` as the share's root. Throws UsageError naming `path` when it is missing or
  // not a directory, Error when /proc/self/fd cannot be opened.
  FuseServer(const std::string& path, const FuseServerOptions& options);

  // Serves one request: `in` is the chain's readable part (fuse_in_header, arguments, WRITE
  // data), `out` its writable part. Returns the bytes written into `out`: a fuse_out_header and
  // the reply, or 0 when the request has no reply (FORGET, BATCH_FORGET, INTERRUPT) or could
  // not be answered at all (no room for a reply header, unreadable header).
  uint32_t handle(std::span<const iovec> in, std::span<const iovec> out);

  // The device was reset: every inode but the root and every handle go; INIT comes next.
  void reset();

  // Snapshots (fuse_snapshot.cc): the session (INIT done, the minor version) and every inode
  // and open handle by its path under the share, to be opened again on restore. Throws
  // kiln::Error when one cannot be named so (a file the guest holds was deleted or moved out
  // of the share on the host).
  void save(snapshot::ByteWriter& w) const;
  // Replaces the session with a saved one, each path opened beneath the share without
  // following a symlink (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) and of the type it had.
  // Throws kiln::Error naming what does not fit; the server is then as it was.
  void restore(snapshot::ByteReader& r);

  size_t inode_count() const { return inodes_.size(); }
  size_t handle_count() const { return handles_.size(); }
  uint64_t bad_requests() const { return log_limit_.events(); }

 private:
  struct Req {
    fuse_in_header h;
    fs::IovReader in;   // the arguments, after the header, bounded by h.len
    fs::IovWriter out;  // the reply; its payload goes at sizeof(fuse_out_header)
  };
  static constexpr int64_t kNoReply = INT64_MIN;
  static constexpr size_t kOutHdr = sizeof(fuse_out_header);

  int64_t dispatch(Req& r);
  void log_bad(const Req& r, const char* what);

  // fuse_server.cc: INIT, DESTROY, FORGET, STATFS and the helpers.
  int64_t op_init(Req& r);
  int64_t op_forget(Req& r);
  int64_t op_batch_forget(Req& r);
  int64_t op_statfs(Req& r);
  template <typename T>
  int64_t reply(Req& r, const T& value) {
    return r.out.write_obj_at(kOutHdr, value) ? static_cast<int64_t>(sizeof(T)) : -EIO;
  }
  int read_name(Req& r, std::string& name);
  fs::Inode* inode(uint64_t nodeid) { return inodes_.get(nodeid); }
  // Re-opens a regular file or directory for I/O (see the header comment); -errno on failure.
  int reopen(const fs::Inode& inode, int flags, UniqueFd& out);
  // The /proc/self/fd entry naming `fd` (for *at() calls on proc_fd_ that follow it).
  static std::string fd_name(int fd) { return std::to_string(fd); }
  void fill_attr(fuse_attr& a, const struct stat& st) const;
  void fill_entry(fuse_entry_out& e, uint64_t nodeid, const struct stat& st) const;
  // Looks `name` up under `dir` (one lookup counted); fills `e`. 0 or -errno.
  int lookup_entry(int dir, const std::string& name, fuse_entry_out& e);
  // The same for an entry just created, whose I/O fd (or -1) is at hand.
  int entry_from_fd(int fd, fuse_entry_out& e);
  mode_t strip_setid(mode_t mode) const;
  uint64_t entry_valid() const;
  uint32_t open_flags(bool dir) const;

  // fuse_entry_ops.cc: names and attributes.
  int64_t op_lookup(Req& r);
  int64_t op_getattr(Req& r);
  int64_t op_setattr(Req& r);
  int64_t op_readlink(Req& r);
  int64_t op_symlink(Req& r);
  int64_t op_mknod(Req& r);
  int64_t op_mkdir(Req& r);
  int64_t op_unlink(Req& r, bool dir);
  int64_t op_rename(Req& r, bool with_flags);
  int64_t op_link(Req& r);
  int64_t op_access(Req& r);
  int set_owner(const fs::Inode& inode, const fuse_setattr_in& in, const struct stat& st);

  // fuse_file_ops.cc: open files.
  int64_t op_open(Req& r, bool dir);
  int64_t op_create(Req& r);
  int64_t op_read(Req& r);
  int64_t op_write(Req& r);
  int64_t op_release(Req& r, bool dir);
  int64_t op_fsync(Req& r, bool dir);
  int64_t op_flush(Req& r);
  int64_t op_fallocate(Req& r);
  int64_t op_lseek(Req& r);
  int64_t op_copy_file_range(Req& r);
  int sanitize_open_flags(uint32_t guest_flags, bool dir, int& host_flags) const;

  // fuse_snapshot.cc: the path of `fd` under the share ("" for the root itself), checked to
  // name that very inode.
  // `root` is the share root's own /proc/self/fd link (read once per save).
  std::string share_path(const std::string& root, int fd, const char* what) const;

  // fuse_dir_ops.cc: READDIR, READDIRPLUS.
  int64_t op_readdir(Req& r, bool plus);

  // fuse_xattr_ops.cc: the user.* namespace only.
  int64_t op_getxattr(Req& r, bool list);
  int64_t op_setxattr(Req& r);
  int64_t op_removexattr(Req& r);

  std::string path_;
  FuseServerOptions options_;
  UniqueFd proc_fd_;  // /proc/self/fd
  fs::InodeTable inodes_;
  fs::HandleTable handles_;
  bool initialized_ = false;
  uint32_t minor_ = 0;
  LogLimiter log_limit_;
  // Scratch, reused: no allocation per request.
  std::vector<iovec> iov_;
  std::vector<uint8_t> buf_;
  std::string name_, name2_;
};

}  // namespace kiln::virtio
