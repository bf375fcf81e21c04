#include "devices/virtio/fs/fuse_server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "base/error.h"

namespace kiln::virtio {

using fs::Inode;

FuseServer::FuseServer(const std::string& path, const FuseServerOptions& options)
    : path_(path), options_(options), inodes_(options.max_inodes), handles_(options.max_handles) {
  UniqueFd root(::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) {
    if (errno == ENOTDIR) throw UsageError("fs path " + path + ": not a directory");
    throw UsageError(errno_message("fs path " + path + ": cannot open the shared directory"));
  }
  struct stat st {};
  if (::fstat(root.get(), &st) < 0) throw UsageError(errno_message("fs path " + path));
  proc_fd_ = UniqueFd(::open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!proc_fd_)
    throw Error(errno_message("virtio-fs: /proc/self/fd (needed to re-open shared files)"));
  inodes_.set_root(std::move(root), st);
  buf_.reserve(64 * 1024);
}

void FuseServer::reset() {
  handles_.clear();
  inodes_.clear();
  initialized_ = false;
  minor_ = 0;
}

void FuseServer::log_bad(const Req& r, const char* what) {
  if (log_limit_.allow())
    spdlog::warn("virtio-fs {}: bad request (opcode {}, {} so far): {}", path_, r.h.opcode,
                 log_limit_.events(), what);
}

uint32_t FuseServer::handle(std::span<const iovec> in, std::span<const iovec> out) {
  fuse_in_header h{};
  fs::IovReader header_reader(in, SIZE_MAX);
  const size_t readable = header_reader.remaining();
  Req r{h, fs::IovReader(in, 0), fs::IovWriter(out)};
  if (!header_reader.read_obj(h)) {
    log_bad(r, "shorter than fuse_in_header");
    return 0;  // nothing to answer to: the chain completes with no reply
  }
  r.h = h;
  int64_t result;
  if (h.len < sizeof(h) || h.len > readable) {
    log_bad(r, "fuse_in_header.len does not match the readable bytes");
    result = -EINVAL;
  } else {
    r.in = fs::IovReader(in, h.len);
    r.in.skip(sizeof(h));
    result = dispatch(r);
  }
  if (result == kNoReply) return 0;
  if (r.out.capacity() < kOutHdr) {
    log_bad(r, "no room for the reply header");
    return 0;
  }
  fuse_out_header oh{};
  oh.unique = h.unique;
  if (result < 0) {
    oh.error = static_cast<int32_t>(result);
    oh.len = kOutHdr;
  } else {
    oh.len = static_cast<uint32_t>(kOutHdr + static_cast<size_t>(result));
  }
  r.out.write_obj_at(0, oh);
  return oh.len;
}

int64_t FuseServer::dispatch(Req& r) {
  const uint32_t op = r.h.opcode;
  if (op == FUSE_INIT) return op_init(r);
  if (op == FUSE_INTERRUPT) return kNoReply;  // requests run to completion before the next
  if (!initialized_) {
    if (op == FUSE_FORGET || op == FUSE_BATCH_FORGET) return kNoReply;
    return -EIO;
  }
  switch (op) {
    case FUSE_DESTROY:
      reset();
      return 0;
    case FUSE_LOOKUP:
      return op_lookup(r);
    case FUSE_FORGET:
      return op_forget(r);
    case FUSE_BATCH_FORGET:
      return op_batch_forget(r);
    case FUSE_GETATTR:
      return op_getattr(r);
    case FUSE_SETATTR:
      return op_setattr(r);
    case FUSE_READLINK:
      return op_readlink(r);
    case FUSE_SYMLINK:
      return op_symlink(r);
    case FUSE_MKNOD:
      return op_mknod(r);
    case FUSE_MKDIR:
      return op_mkdir(r);
    case FUSE_UNLINK:
      return op_unlink(r, false);
    case FUSE_RMDIR:
      return op_unlink(r, true);
    case FUSE_RENAME:
      return op_rename(r, false);
    case FUSE_RENAME2:
      return op_rename(r, true);
    case FUSE_LINK:
      return op_link(r);
    case FUSE_OPEN:
      return op_open(r, false);
    case FUSE_READ:
      return op_read(r);
    case FUSE_WRITE:
      return op_write(r);
    case FUSE_STATFS:
      return op_statfs(r);
    case FUSE_RELEASE:
      return op_release(r, false);
    case FUSE_FSYNC:
      return op_fsync(r, false);
    case FUSE_FLUSH:
      return op_flush(r);
    case FUSE_OPENDIR:
      return op_open(r, true);
    case FUSE_READDIR:
      return op_readdir(r, false);
    case FUSE_READDIRPLUS:
      return op_readdir(r, true);
    case FUSE_RELEASEDIR:
      return op_release(r, true);
    case FUSE_FSYNCDIR:
      return op_fsync(r, true);
    case FUSE_ACCESS:
      return op_access(r);
    case FUSE_CREATE:
      return op_create(r);
    case FUSE_FALLOCATE:
      return op_fallocate(r);
    case FUSE_LSEEK:
      return op_lseek(r);
    case FUSE_COPY_FILE_RANGE:
      return op_copy_file_range(r);
    case FUSE_GETXATTR:
      return op_getxattr(r, false);
    case FUSE_LISTXATTR:
      return op_getxattr(r, true);
    case FUSE_SETXATTR:
      return op_setxattr(r);
    case FUSE_REMOVEXATTR:
      return op_removexattr(r);
    default:
      return -ENOSYS;
  }
}

int64_t FuseServer::op_init(Req& r) {
  fuse_init_in in{};
  if (r.in.remaining() < 16) return -EINVAL;  // major, minor, max_readahead, flags
  r.in.read_partial(&in, sizeof(in));
  fuse_init_out out{};
  out.major = FUSE_KERNEL_VERSION;
  out.minor = FUSE_KERNEL_MINOR_VERSION;
  if (in.major > FUSE_KERNEL_VERSION) return reply(r, out);  // the driver retries with ours
  if (in.major < FUSE_KERNEL_VERSION || in.minor < kMinMinor) {
    if (log_limit_.allow())
      spdlog::warn("virtio-fs {}: driver speaks FUSE {}.{}, at least 7.{} is needed", path_,
                   in.major, in.minor, kMinMinor);
    return -EPROTO;
  }
  // A second INIT starts over, like DESTROY + INIT.
  if (initialized_) reset();
  minor_ = std::min<uint32_t>(in.minor, FUSE_KERNEL_MINOR_VERSION);
  out.minor = minor_;
  out.max_readahead = std::min(in.max_readahead, kMaxIo);
  uint32_t wanted = FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES | FUSE_DO_READDIRPLUS |
                    FUSE_READDIRPLUS_AUTO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES;
  if (options_.cache != FsCache::kNever) wanted |= FUSE_AUTO_INVAL_DATA;
  if (options_.cache == FsCache::kAlways) wanted |= FUSE_CACHE_SYMLINKS;
  out.flags = in.flags & wanted;
  out.max_background = 64;
  out.congestion_threshold = 48;
  out.max_write = kMaxIo;
  out.time_gran = 1;
  out.max_pages = static_cast<uint16_t>(kMaxIo / 4096);
  initialized_ = true;
  return reply(r, out);
}

int64_t FuseServer::op_forget(Req& r) {
  fuse_forget_in in{};
  if (!r.in.read_obj(in)) {
    log_bad(r, "short FORGET");
    return kNoReply;
  }
  inodes_.forget(r.h.nodeid, in.nlookup);
  return kNoReply;
}

int64_t FuseServer::op_batch_forget(Req& r) {
  fuse_batch_forget_in in{};
  if (!r.in.read_obj(in)) {
    log_bad(r, "short BATCH_FORGET");
    return kNoReply;
  }
  for (uint32_t i = 0; i < in.count; ++i) {
    fuse_forget_one one{};
    if (!r.in.read_obj(one)) {
      log_bad(r, "BATCH_FORGET count past the request");
      break;
    }
    inodes_.forget(one.nodeid, one.nlookup);
  }
  return kNoReply;
}

int64_t FuseServer::op_statfs(Req& r) {
  const Inode* node = inode(r.h.nodeid);
  if (!node) return -ESTALE;
  struct statfs s {};
  if (::fstatfs(node->fd.get(), &s) < 0) return -errno;
  fuse_statfs_out out{};
  out.st.blocks = s.f_blocks;
  out.st.bfree = s.f_bfree;
  out.st.bavail = s.f_bavail;
  out.st.files = s.f_files;
  out.st.ffree = s.f_ffree;
  out.st.bsize = static_cast<uint32_t>(s.f_bsize);
  out.st.namelen = static_cast<uint32_t>(s.f_namelen);
  out.st.frsize = static_cast<uint32_t>(s.f_frsize);
  return reply(r, out);
}

int FuseServer::read_name(Req& r, std::string& name) {
  // No NUL before the end of the request: malformed; else longer than NAME_MAX.
  if (!r.in.read_cstring(name, NAME_MAX)) return r.in.remaining() == 0 ? -EINVAL : -ENAMETOOLONG;
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
    return -EINVAL;
  return 0;
}

int FuseServer::reopen(const Inode& node, int flags, UniqueFd& out) {
  if (node.type == S_IFLNK) return -ELOOP;
  if (node.type != S_IFREG && node.type != S_IFDIR) return -ENXIO;
  if (node.type == S_IFDIR && (flags & O_ACCMODE) != O_RDONLY) return -EISDIR;
  out =
      UniqueFd(::openat(proc_fd_.get(), fd_name(node.fd.get()).c_str(),
                        (flags & ~(O_CREAT | O_EXCL | O_PATH | O_TMPFILE)) | O_CLOEXEC | O_NOCTTY));
  return out ? 0 : -errno;
}

void FuseServer::fill_attr(fuse_attr& a, const struct stat& st) const {
  a = {};
  a.ino = st.st_ino;
  a.size = static_cast<uint64_t>(st.st_size);
  a.blocks = static_cast<uint64_t>(st.st_blocks);
  a.atime = static_cast<uint64_t>(st.st_atim.tv_sec);
  a.mtime = static_cast<uint64_t>(st.st_mtim.tv_sec);
  a.ctime = static_cast<uint64_t>(st.st_ctim.tv_sec);
  a.atimensec = static_cast<uint32_t>(st.st_atim.tv_nsec);
  a.mtimensec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
  a.ctimensec = static_cast<uint32_t>(st.st_ctim.tv_nsec);
  a.mode = st.st_mode;
  a.nlink = static_cast<uint32_t>(st.st_nlink);
  a.uid = st.st_uid;
  a.gid = st.st_gid;
  a.rdev = static_cast<uint32_t>(st.st_rdev);
  a.blksize = static_cast<uint32_t>(st.st_blksize);
}

uint64_t FuseServer::entry_valid() const {
  switch (options_.cache) {
    case FsCache::kNever:
      return 0;
    case FsCache::kAuto:
      return 1;
    case FsCache::kAlways:
      return 86400;
  }
  return 0;
}

uint32_t FuseServer::open_flags(bool dir) const {
  switch (options_.cache) {
    case FsCache::kNever:
      return dir ? 0 : FOPEN_DIRECT_IO;
    case FsCache::kAuto:
      return 0;
    case FsCache::kAlways:
      return dir ? FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE : FOPEN_KEEP_CACHE;
  }
  return 0;
}

void FuseServer::fill_entry(fuse_entry_out& e, uint64_t nodeid, const struct stat& st) const {
  e = {};
  e.nodeid = nodeid;
  e.generation = 0;
  e.entry_valid = entry_valid();
  e.attr_valid = entry_valid();
  fill_attr(e.attr, st);
}

int FuseServer::lookup_entry(int dir, const std::string& name, fuse_entry_out& e) {
  UniqueFd fd(::openat(dir, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return -errno;
  struct stat st {};
  if (::fstatat(fd.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) return -errno;
  const uint64_t id = inodes_.lookup(std::move(fd), st);
  if (id == 0) {
    if (log_limit_.allow())
      spdlog::warn("virtio-fs {}: inode table full ({} inodes): lookup refused with ENFILE", path_,
                   inodes_.max());
    return -ENFILE;
  }
  fill_entry(e, id, st);
  return 0;
}

int FuseServer::entry_from_fd(int io_fd, fuse_entry_out& e) {
  // The O_PATH fd for the new inode comes from the I/O fd itself: no second name lookup.
  UniqueFd fd(::openat(proc_fd_.get(), fd_name(io_fd).c_str(), O_PATH | O_CLOEXEC));
  if (!fd) return -errno;
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) return -errno;
  const uint64_t id = inodes_.lookup(std::move(fd), st);
  if (id == 0) return -ENFILE;
  fill_entry(e, id, st);
  return 0;
}

mode_t FuseServer::strip_setid(mode_t mode) const {
  return options_.allow_setid_and_devices ? mode : mode & ~mode_t{S_ISUID | S_ISGID};
}

}  // namespace kiln::virtio
