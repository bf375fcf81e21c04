// Owning wrapper for an mmap'd region: unmapped exactly once.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <utility>

namespace kiln {

class Mapping {
 public:
  Mapping() = default;
  // Anonymous private mapping of `size` bytes (guest RAM), its address a multiple of `align`
  // (a power of two; 0: any page). Throws kiln::Error on failure.
  static Mapping anonymous(size_t size, size_t align = 0);
  // `size` bytes of hugetlbfs 2 MiB pages, reserved now (so a guest's first touch cannot fail
  // with SIGBUS later). Throws kiln::Error saying how to reserve pages when there are too few.
  static Mapping anonymous_huge_2m(size_t size);
  // Maps `size` bytes of `fd` at `offset` with `prot`/`flags` (e.g. a vCPU's kvm_run page).
  static Mapping of_fd(int fd, size_t size, int prot, int flags, off_t offset = 0);

  ~Mapping() { reset(); }
  Mapping(Mapping&& o) noexcept
      : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  Mapping& operator=(Mapping&& o) noexcept {
    if (this != &o) {
      reset();
      addr_ = std::exchange(o.addr_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  size_t size() const { return size_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(addr_);
  }

 private:
  Mapping(void* addr, size_t size) : addr_(addr), size_(size) {}
  void reset() {
    if (addr_) ::munmap(addr_, size_);
    addr_ = nullptr;
    size_ = 0;
  }
  void* addr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace kiln
