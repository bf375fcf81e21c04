#include "base/snapshot/memory_file.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "base/snapshot/atomic_file.h"

namespace kiln::snapshot {

namespace {

constexpr uint64_t kPage = 4096;
constexpr char kTrailerMagic[8] = {'K', 'I', 'L', 'N', 'M', 'E', 'M', '1'};

bool all_zero(const uint8_t* p, size_t n) {
  static const uint8_t zero[kPage] = {};
  return std::memcmp(p, zero, n) == 0;
}

bool page_dirty(const std::vector<uint64_t>& bitmap, uint64_t page) {
  const uint64_t word = page / 64;
  return word < bitmap.size() && ((bitmap[word] >> (page % 64)) & 1);
}

uint64_t file_size(int fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) throw_errno(what);
  if (!S_ISREG(st.st_mode)) throw Error(what + ": not a regular file");
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace

MemoryId new_memory_id() {
  MemoryId id{};
  size_t got = 0;
  while (got < id.size()) {
    const ssize_t n = ::getrandom(id.data() + got, id.size() - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("getrandom for a snapshot id");
    got += static_cast<size_t>(n);
  }
  return id;
}

void write_memory_file(const GuestMemory& mem, const std::string& path, const MemoryId& id,
                       const DirtyBitmaps* dirty) {
  const std::string what = "snapshot memory " + path;
  if (dirty && dirty->size() != mem.regions().size())
    throw Error(what + ": a dirty bitmap per memory region is needed");
  replace_file_atomically(path, what, [&](int fd) {
    if (::ftruncate(fd, static_cast<off_t>(mem.total_size() + kMemoryTrailerSize)) < 0)
      throw_errno(what);
    uint64_t offset = 0;
    for (size_t r = 0; r < mem.regions().size(); ++r) {
      const GuestRegion& region = mem.regions()[r];
      const uint8_t* base = region.mapping.data();
      const uint64_t pages = region.size() / kPage;
      // Runs of pages to write, one pwrite each.
      uint64_t page = 0;
      while (page < pages) {
        auto wanted = [&](uint64_t p) {
          return dirty ? page_dirty((*dirty)[r], p) : !all_zero(base + p * kPage, kPage);
        };
        if (!wanted(page)) {
          ++page;
          continue;
        }
        uint64_t end = page + 1;
        while (end < pages && wanted(end)) ++end;
        write_all(fd, std::span(base + page * kPage, (end - page) * kPage), what,
                  static_cast<int64_t>(offset + page * kPage));
        page = end;
      }
      offset += region.size();
    }
    uint8_t trailer[sizeof kTrailerMagic + kMemoryIdSize];
    std::memcpy(trailer, kTrailerMagic, sizeof kTrailerMagic);
    std::memcpy(trailer + sizeof kTrailerMagic, id.data(), id.size());
    write_all(fd, trailer, what, static_cast<int64_t>(offset));
  });
}

UniqueFd open_memory_file(const std::string& path, uint64_t size, const MemoryId& id) {
  const std::string what = "snapshot memory " + path;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno(what);
  const uint64_t have = file_size(fd.get(), what);
  if (have != size + kMemoryTrailerSize)
    throw Error(what + ": " + std::to_string(have) + " bytes, but the snapshot's guest has " +
                std::to_string(size) + " and a " + std::to_string(kMemoryTrailerSize) +
                "-byte trailer (a memory file of another snapshot, or a truncated one)");
  uint8_t trailer[sizeof kTrailerMagic + kMemoryIdSize];
  const ssize_t n = ::pread(fd.get(), trailer, sizeof trailer, static_cast<off_t>(size));
  if (n < 0) throw_errno(what);
  if (static_cast<size_t>(n) != sizeof trailer ||
      std::memcmp(trailer, kTrailerMagic, sizeof kTrailerMagic) != 0)
    throw Error(what + ": not a Kiln memory file (no trailer)");
  if (std::memcmp(trailer + sizeof kTrailerMagic, id.data(), id.size()) != 0)
    throw Error(what +
                ": taken with another snapshot than this state file (a later snapshot "
                "replaced it, or the files are mixed up)");
  return fd;
}

void rebase_memory_file(const std::string& base, const std::string& diff) {
  const std::string what = "rebase " + diff + " onto " + base;
  UniqueFd in(::open(diff.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) throw_errno(what + ": open " + diff);
  UniqueFd out(::open(base.c_str(), O_WRONLY | O_CLOEXEC));
  if (!out) throw_errno(what + ": open " + base);
  const uint64_t size = file_size(in.get(), what);
  if (file_size(out.get(), what) != size)
    throw Error(what + ": the files differ in size (not the same VM's memory)");
  std::vector<uint8_t> buf(1u << 20);
  off_t pos = 0;
  while (static_cast<uint64_t>(pos) < size) {
    const off_t data = ::lseek(in.get(), pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only holes left
    if (data < 0) throw_errno(what + ": SEEK_DATA");
    off_t hole = ::lseek(in.get(), data, SEEK_HOLE);
    if (hole < 0) throw_errno(what + ": SEEK_HOLE");
    for (off_t at = data; at < hole;) {
      const size_t n =
          static_cast<size_t>(std::min<off_t>(hole - at, static_cast<off_t>(buf.size())));
      const ssize_t got = ::pread(in.get(), buf.data(), n, at);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) throw_errno(what + ": read " + diff);
      write_all(out.get(), std::span(buf.data(), static_cast<size_t>(got)), base, at);
      at += got;
    }
    pos = hole;
  }
  if (::fsync(out.get()) < 0) throw_errno(what + ": fsync " + base);
}

}  // namespace kiln::snapshot
