#include "vmm/mapping.h"

#include <string>

#include "vmm/error.h"

namespace kiln {

Mapping Mapping::anonymous(size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw_errno("mmap of " + std::to_string(size >> 20) + " MiB of guest RAM");
  // Guest RAM is never useful in a core dump of the VMM and may hold secrets.
  ::madvise(p, size, MADV_DONTDUMP);
  return Mapping(p, size);
}

Mapping Mapping::of_fd(int fd, size_t size, int prot, int flags, off_t offset) {
  void* p = ::mmap(nullptr, size, prot, flags, fd, offset);
  if (p == MAP_FAILED) throw_errno("mmap of fd " + std::to_string(fd));
  return Mapping(p, size);
}

}  // namespace kiln
