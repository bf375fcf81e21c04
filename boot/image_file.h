// Boot images (kernel, initrd) on the host, read in pieces: headers into small buffers and
// payloads straight into guest memory, so nothing is read before its size has been checked
// against guest RAM and no host copy of a whole image is made. Also size and RAM descriptions
// for error messages.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/guest_memory.h"
#include "base/unique_fd.h"

namespace kiln::boot {

class ImageFile {
 public:
  // Opens the regular file at `path`. `what` names it in errors ("kernel", "initrd"): throws
  // kiln::UsageError "<what> <path>: <reason>" when it cannot be opened or is not a regular
  // file. Opens with O_NONBLOCK and checks with fstat before any read, so a FIFO or a device
  // is refused at once instead of blocking.
  ImageFile(std::string what, std::string path);

  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Reads exactly out.size() bytes at `offset` (e.g. into a guest memory slice). Throws
  // kiln::UsageError naming the file if it cannot be read or has shrunk.
  void read_at(uint64_t offset, std::span<uint8_t> out) const;
  // The bytes [offset, offset + len) clamped to the file's size.
  std::vector<uint8_t> read_head(uint64_t offset, uint64_t len) const;

 private:
  std::string what_;
  std::string path_;
  UniqueFd fd_;
  uint64_t size_ = 0;
};

// "300 MiB", "1.5 MiB", "12 KiB", "100 bytes": for messages only.
std::string format_size(uint64_t bytes);

// "[0, 0x4000000) [0x100000000, 0x104000000)": the guest RAM regions, for messages only.
std::string describe_ram(const GuestMemory& mem);

}  // namespace kiln::boot
