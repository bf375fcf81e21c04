// The FUSE server's snapshot: the session and its inode and handle tables by path. A host fd
// cannot be saved; what can be is where it points under the share, found through
// /proc/self/fd and checked to name the same inode, and opened again on restore beneath the
// share's root without following a symlink on the way (the state file is user input, and the
// share holds whatever the guest put there).
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <map>

#include "base/error.h"
#include "devices/virtio/fs/fuse_server.h"

namespace kiln::virtio {

namespace {

constexpr uint16_t kVersion = 1;
// The flags a handle is opened again with (what F_GETFL reports that matters for its I/O).
constexpr int kHandleFlags =
    O_ACCMODE | O_APPEND | O_DIRECTORY | O_DIRECT | O_SYNC | O_DSYNC | O_NOATIME | O_NONBLOCK;

std::string link_of(int fd) {
  char buf[PATH_MAX + 1];
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(proc.c_str(), buf, PATH_MAX);
  if (n < 0) throw_errno("readlink " + proc);
  return std::string(buf, static_cast<size_t>(n));
}

// `path` under `root`, never through a symlink, never above it.
UniqueFd open_beneath(int root, const std::string& path, int flags) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_NOFOLLOW | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const char* p = path.empty() ? "." : path.c_str();
  return UniqueFd(static_cast<int>(::syscall(SYS_openat2, root, p, &how, sizeof how)));
}

}  // namespace

std::string FuseServer::share_path(const std::string& root, int fd, const char* what) const {
  const std::string link = link_of(fd);
  std::string rel;
  if (link == root)
    rel = "";
  else if (link.size() > root.size() + 1 && link.compare(0, root.size(), root) == 0 &&
           link[root.size()] == '/')
    rel = link.substr(root.size() + 1);
  else
    throw Error("virtio-fs " + path_ + ": " + what + " is no longer under the share (" + link +
                ")");
  // The name must lead back to this very inode: not a deleted file (Linux names it
  // "... (deleted)") and not one renamed over since.
  struct stat held {
  }, named{};
  UniqueFd again = open_beneath(inodes_.root().fd.get(), rel, O_PATH);
  if (::fstat(fd, &held) < 0 || !again || ::fstat(again.get(), &named) < 0 ||
      held.st_dev != named.st_dev || held.st_ino != named.st_ino)
    throw Error("virtio-fs " + path_ + ": " + what + " (" + link +
                ") was deleted or replaced on the host, and a snapshot cannot name it");
  return rel;
}

void FuseServer::save(snapshot::ByteWriter& w) const {
  const std::string root = link_of(inodes_.root().fd.get());
  w.u16(kVersion);
  w.u8(initialized_ ? 1 : 0);
  w.u32(minor_);
  // In id order, so a restore inserts them as they were made.
  std::map<uint64_t, const fs::Inode*> inodes;
  inodes_.for_each([&](uint64_t id, const fs::Inode& inode) {
    if (id != fs::kRootNodeId) inodes[id] = &inode;
  });
  w.u64(inodes_.next_id());
  w.u64(inodes_.root().lookups);
  w.u32(static_cast<uint32_t>(inodes.size()));
  for (const auto& [id, inode] : inodes) {
    w.u64(id);
    w.u64(inode->lookups);
    w.u32(inode->type);
    w.blob(share_path(root, inode->fd.get(), ("inode " + std::to_string(id)).c_str()));
  }
  std::map<uint64_t, const fs::Handle*> handles;
  handles_.for_each([&](uint64_t id, const fs::Handle& h) { handles[id] = &h; });
  w.u64(handles_.next_id());
  w.u32(static_cast<uint32_t>(handles.size()));
  for (const auto& [id, h] : handles) {
    const int flags = ::fcntl(h->fd.get(), F_GETFL);
    if (flags < 0) throw_errno("virtio-fs " + path_ + ": F_GETFL of handle " + std::to_string(id));
    w.u64(id);
    w.u8(static_cast<uint8_t>((h->dir ? 1 : 0) | (h->writable ? 2 : 0)));
    w.u32(static_cast<uint32_t>(flags & kHandleFlags));
    w.blob(share_path(root, h->fd.get(), ("open handle " + std::to_string(id)).c_str()));
  }
}

void FuseServer::restore(snapshot::ByteReader& r) {
  const std::string what = "virtio-fs " + path_ + " state";
  r.expect_version(kVersion);
  const uint8_t initialized = r.u8();
  const uint32_t minor = r.u32();
  const uint64_t next_inode = r.u64(), root_lookups = r.u64();
  const uint32_t inode_count = r.u32();
  if (initialized > 1 ||
      (initialized && (minor < kMinMinor || minor > FUSE_KERNEL_MINOR_VERSION)) ||
      inode_count >= inodes_.max() || next_inode <= fs::kRootNodeId || root_lookups == 0)
    throw Error(what + ": a session the server never has");
  const int root = inodes_.root().fd.get();
  // New tables, swapped in once everything opened: a refusal leaves the server as it was.
  fs::InodeTable inodes(inodes_.max());
  {
    struct stat st {};
    UniqueFd root_again(::fcntl(root, F_DUPFD_CLOEXEC, 0));
    if (!root_again || ::fstat(root, &st) < 0) throw_errno(what + ": the share's root");
    inodes.set_root(std::move(root_again), st);
  }
  for (uint32_t i = 0; i < inode_count; ++i) {
    const uint64_t id = r.u64(), lookups = r.u64();
    const uint32_t type = r.u32();
    const std::string path = r.blob(PATH_MAX);
    fs::Inode inode;
    inode.fd = open_beneath(root, path, O_PATH);
    struct stat st {};
    if (!inode.fd || ::fstat(inode.fd.get(), &st) < 0)
      throw Error(errno_message(what + ": inode " + std::to_string(id) + " (" + path + ")"));
    if ((st.st_mode & S_IFMT) != type)
      throw Error(what + ": inode " + std::to_string(id) + " (" + path +
                  ") is of another type than when the snapshot was taken");
    inode.dev = st.st_dev;
    inode.ino = st.st_ino;
    inode.type = type;
    inode.lookups = lookups;
    if (!inodes.insert(id, std::move(inode), next_inode))
      throw Error(what + ": inode " + std::to_string(id) + " (" + path +
                  ") repeats another, or its id or count is out of bounds");
  }
  inodes.set_next_id(next_inode);
  const uint64_t next_handle = r.u64();
  const uint32_t handle_count = r.u32();
  if (handle_count > options_.max_handles || next_handle == 0)
    throw Error(what + ": too many open handles, or none could have been opened");
  fs::HandleTable handles(options_.max_handles);
  for (uint32_t i = 0; i < handle_count; ++i) {
    const uint64_t id = r.u64();
    const uint8_t bits = r.u8();
    const uint32_t flags = r.u32();
    const std::string path = r.blob(PATH_MAX);
    if (bits > 3 || (flags & ~static_cast<uint32_t>(kHandleFlags)) ||
        ((bits & 2) && options_.read_only) ||
        ((bits & 2) != 0) != ((flags & O_ACCMODE) != O_RDONLY))
      throw Error(what + ": open handle " + std::to_string(id) + " has flags it cannot have");
    fs::Handle h;
    h.dir = bits & 1;
    h.writable = bits & 2;
    h.fd = open_beneath(root, path, static_cast<int>(flags));
    struct stat st {};
    if (!h.fd || ::fstat(h.fd.get(), &st) < 0)
      throw Error(errno_message(what + ": open handle " + std::to_string(id) + " (" + path + ")"));
    if (S_ISDIR(st.st_mode) != h.dir || (!h.dir && !S_ISREG(st.st_mode)))
      throw Error(what + ": open handle " + std::to_string(id) + " (" + path +
                  ") is of another type than when the snapshot was taken");
    if (!handles.insert(id, std::move(h), next_handle))
      throw Error(what + ": open handle " + std::to_string(id) +
                  " repeats another or is out of "
                  "bounds");
  }
  r.finish();
  handles.set_next_id(next_handle);
  inodes_ = std::move(inodes);
  handles_ = std::move(handles);
  // The root's count (the guest's lookups of it) as it was.
  if (fs::Inode* root_inode = inodes_.get(fs::kRootNodeId)) root_inode->lookups = root_lookups;
  initialized_ = initialized == 1;
  minor_ = minor;
}

}  // namespace kiln::virtio
