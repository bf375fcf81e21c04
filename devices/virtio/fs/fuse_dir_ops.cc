// READDIR and READDIRPLUS: getdents64 from the offset the guest gives (the host's own d_off
// cookies), as many entries as fit the guest's size (at most kMaxDirRead). READDIRPLUS looks
// each entry up (one lookup counted, only once the entry is known to fit); "." and ".." come
// with nodeid 0, which the guest's kernel skips.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "devices/virtio/fs/fuse_server.h"

namespace kiln::virtio {

namespace {

struct LinuxDirent64 {
  uint64_t d_ino;
  int64_t d_off;
  uint16_t d_reclen;
  uint8_t d_type;
  char d_name[];
};

bool is_dot_or_dotdot(const char* name, size_t len) {
  return (len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.');
}

}  // namespace

int64_t FuseServer::op_readdir(Req& r, bool plus) {
  fuse_read_in in{};
  if (!r.in.read_obj(in)) return -EINVAL;
  fs::Handle* h = handles_.get(in.fh);
  if (!h || !h->dir) return -EBADF;
  if (r.out.capacity() < kOutHdr) return -EINVAL;
  const size_t size = std::min<size_t>({in.size, kMaxDirRead, r.out.capacity() - kOutHdr});
  if (in.offset > INT64_MAX) return -EINVAL;
  if (::lseek(h->fd.get(), static_cast<off_t>(in.offset), SEEK_SET) < 0) return -errno;

  buf_.resize(size);
  size_t used = 0;
  alignas(8) char dents[16 * 1024];
  for (bool full = false; !full;) {
    const ssize_t n = ::getdents64(h->fd.get(), dents, sizeof(dents));
    if (n < 0) {
      if (used == 0) return -errno;
      break;
    }
    if (n == 0) break;
    for (size_t pos = 0; pos < static_cast<size_t>(n);) {
      const auto* d = reinterpret_cast<const LinuxDirent64*>(dents + pos);
      if (d->d_reclen == 0) break;
      pos += d->d_reclen;
      const size_t max_name = d->d_reclen - offsetof(LinuxDirent64, d_name);
      const size_t namelen = strnlen(d->d_name, max_name);
      const size_t head = plus ? sizeof(fuse_direntplus) : sizeof(fuse_dirent);
      const size_t entsize = FUSE_DIRENT_ALIGN(head + namelen);
      if (used + entsize > size) {
        full = true;
        break;
      }
      uint8_t* out = buf_.data() + used;
      std::memset(out, 0, entsize);
      fuse_dirent* dirent;
      if (plus) {
        auto* p = reinterpret_cast<fuse_direntplus*>(out);
        const bool dots = is_dot_or_dotdot(d->d_name, namelen);
        if (!dots) name_.assign(d->d_name, namelen);
        if (dots || lookup_entry(h->fd.get(), name_, p->entry_out) != 0) {
          p->entry_out = {};
          p->entry_out.attr.ino = d->d_ino;
          p->entry_out.attr.mode = static_cast<uint32_t>(d->d_type) << 12;
        }
        dirent = &p->dirent;
      } else {
        dirent = reinterpret_cast<fuse_dirent*>(out);
      }
      dirent->ino = d->d_ino;
      dirent->off = static_cast<uint64_t>(d->d_off);
      dirent->namelen = static_cast<uint32_t>(namelen);
      dirent->type = d->d_type;
      std::memcpy(reinterpret_cast<uint8_t*>(dirent) + sizeof(fuse_dirent), d->d_name, namelen);
      used += entsize;
    }
  }
  if (!r.out.write_at(kOutHdr, buf_.data(), used)) return -EIO;
  return static_cast<int64_t>(used);
}

}  // namespace kiln::virtio
