// Bounded readers and writers over a FUSE request's iovecs (the device-readable and the
// device-writable part of a descriptor chain, in guest memory). Nothing is read or written
// past the limits given at construction; every accessor reports a short buffer as false.
#pragma once

#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace kiln::virtio::fs {

// Reads a request's bytes front to back, at most `limit` bytes in all (fuse_in_header.len).
class IovReader {
 public:
  IovReader(std::span<const iovec> iov, size_t limit) : iov_(iov), remaining_(limit) {
    size_t total = 0;
    for (const iovec& v : iov) total += v.iov_len;
    remaining_ = std::min(remaining_, total);
  }

  size_t remaining() const { return remaining_; }

  // Copies the next n bytes (false, nothing consumed, if fewer remain).
  bool read(void* dst, size_t n) {
    if (n > remaining_) return false;
    walk(n, [&](const uint8_t* p, size_t len) {
      std::memcpy(dst, p, len);
      dst = static_cast<uint8_t*>(dst) + len;
    });
    return true;
  }
  template <typename T>
  bool read_obj(T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    return read(&value, sizeof(T));
  }
  // Copies up to n bytes and zeroes the rest of dst; returns the bytes copied.
  size_t read_partial(void* dst, size_t n) {
    const size_t got = std::min(n, remaining_);
    read(dst, got);
    std::memset(static_cast<uint8_t*>(dst) + got, 0, n - got);
    return got;
  }
  bool skip(size_t n) {
    if (n > remaining_) return false;
    walk(n, [](const uint8_t*, size_t) {});
    return true;
  }
  // Reads a NUL-terminated string of at most `max` bytes before the NUL (the NUL is consumed,
  // not stored). False when no NUL comes within max + 1 bytes or before the end.
  bool read_cstring(std::string& out, size_t max) {
    out.clear();
    while (remaining_ > 0) {
      const iovec& v = iov_[idx_];
      const auto* p = static_cast<const uint8_t*>(v.iov_base) + off_;
      const size_t avail = std::min(v.iov_len - off_, remaining_);
      const void* nul = std::memchr(p, 0, avail);
      const size_t n = nul ? static_cast<size_t>(static_cast<const uint8_t*>(nul) - p) : avail;
      if (out.size() + n > max) return false;
      out.append(reinterpret_cast<const char*>(p), n);
      advance(nul ? n + 1 : n);
      if (nul) return true;
    }
    return false;
  }
  // Appends iovecs for the next n bytes (straight into guest memory) and consumes them.
  bool take_iovecs(size_t n, std::vector<iovec>& out) {
    if (n > remaining_) return false;
    walk(n, [&](const uint8_t* p, size_t len) { out.push_back({const_cast<uint8_t*>(p), len}); });
    return true;
  }

 private:
  template <typename Fn>
  void walk(size_t n, Fn fn) {
    while (n > 0) {
      const iovec& v = iov_[idx_];
      const size_t len = std::min(v.iov_len - off_, n);
      if (len) fn(static_cast<const uint8_t*>(v.iov_base) + off_, len);
      advance(len);
      n -= len;
    }
  }
  void advance(size_t n) {
    off_ += n;
    remaining_ -= n;
    while (idx_ < iov_.size() && off_ == iov_[idx_].iov_len) {
      ++idx_;
      off_ = 0;
    }
  }

  std::span<const iovec> iov_;
  size_t idx_ = 0;
  size_t off_ = 0;
  size_t remaining_;
};

// Writes a reply into the device-writable iovecs at given offsets, never past their end.
class IovWriter {
 public:
  explicit IovWriter(std::span<const iovec> iov) : iov_(iov) {
    for (const iovec& v : iov) capacity_ += v.iov_len;
  }
  size_t capacity() const { return capacity_; }

  bool write_at(size_t offset, const void* src, size_t n) {
    return walk(offset, n, [&](uint8_t* p, size_t len) {
      std::memcpy(p, src, len);
      src = static_cast<const uint8_t*>(src) + len;
    });
  }
  template <typename T>
  bool write_obj_at(size_t offset, const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    return write_at(offset, &value, sizeof(T));
  }
  // Appends iovecs for [offset, offset + n) (straight into guest memory).
  bool iovecs_at(size_t offset, size_t n, std::vector<iovec>& out) {
    return walk(offset, n, [&](uint8_t* p, size_t len) { out.push_back({p, len}); });
  }

 private:
  template <typename Fn>
  bool walk(size_t offset, size_t n, Fn fn) {
    if (offset > capacity_ || n > capacity_ - offset) return false;
    for (const iovec& v : iov_) {
      if (n == 0) break;
      if (offset >= v.iov_len) {
        offset -= v.iov_len;
        continue;
      }
      const size_t len = std::min(v.iov_len - offset, n);
      fn(static_cast<uint8_t*>(v.iov_base) + offset, len);
      n -= len;
      offset = 0;
    }
    return true;
  }

  std::span<const iovec> iov_;
  size_t capacity_ = 0;
};

}  // namespace kiln::virtio::fs
