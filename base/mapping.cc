#include "base/mapping.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "base/error.h"

namespace kiln {

Mapping Mapping::anonymous(size_t size, size_t align) {
  // Over-allocate by `align`, then give back the unaligned head and the tail.
  const size_t reserve = align > 0 ? size + align : size;
  void* p = ::mmap(nullptr, reserve, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw_errno("mmap of " + std::to_string(size >> 20) + " MiB of guest RAM");
  auto* start = static_cast<uint8_t*>(p);
  if (align > 0) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    start += ((a + align - 1) & ~(align - 1)) - a;
    if (start > p) ::munmap(p, static_cast<size_t>(start - static_cast<uint8_t*>(p)));
    uint8_t* end = start + size;
    uint8_t* reserved_end = static_cast<uint8_t*>(p) + reserve;
    if (reserved_end > end) ::munmap(end, static_cast<size_t>(reserved_end - end));
  }
  // Guest RAM is never useful in a core dump of the VMM and may hold secrets.
  ::madvise(start, size, MADV_DONTDUMP);
  return Mapping(start, size);
}

Mapping Mapping::anonymous_huge_2m(size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (21 << MAP_HUGE_SHIFT), -1, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    const std::string mib = std::to_string(size >> 20);
    throw Error("huge_pages 2M: cannot map " + mib + " MiB of guest RAM in 2 MiB huge pages (" +
                std::strerror(err) + "): reserve at least " + std::to_string(size >> 21) +
                " of them first (see HugePages_Free in /proc/meminfo; e.g. `echo N > " +
                "/proc/sys/vm/nr_hugepages`), or use huge_pages None or Transparent");
  }
  ::madvise(p, size, MADV_DONTDUMP);
  return Mapping(p, size);
}

Mapping Mapping::of_fd(int fd, size_t size, int prot, int flags, off_t offset) {
  void* p = ::mmap(nullptr, size, prot, flags, fd, offset);
  if (p == MAP_FAILED) throw_errno("mmap of fd " + std::to_string(fd));
  return Mapping(p, size);
}

}  // namespace kiln
