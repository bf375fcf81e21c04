// virtio-blk over a raw image file: IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES; read-only
// drives; requests past capacity fail with IOERR. I/O runs on the event-loop thread with
// preadv/pwritev straight into guest memory (no copies).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "devices/virtio/device.h"
#include "vmm/log_limiter.h"
#include "vmm/metrics.h"
#include "vmm/unique_fd.h"

namespace kiln::virtio {

struct BlockOptions {
  std::string path;
  bool read_only = false;
  std::string id;  // GET_ID serial (at most 20 bytes); default: the file name
};

class BlockDevice : public VirtioDevice {
 public:
  static constexpr uint64_t kSectorSize = 512;
  static constexpr size_t kIdBytes = 20;

  // Opens and locks the image. Throws kiln::UsageError naming the file: missing, unreadable,
  // not a regular file or block device, size not a multiple of 512, locked by another process.
  explicit BlockDevice(const BlockOptions& options);

  uint32_t device_id() const override;
  uint64_t device_features() const override;
  size_t num_queues() const override { return 1; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  std::string process_queue(size_t index, Queue& queue, const GuestMemory& mem) override;

  // Switches to another image (opened, checked and locked like the first; the old one is
  // closed only on success). The caller then signals a config change to the guest.
  void replace_backing(const std::string& path);

  // Counts ops, bytes and errors into `metrics` (may be null).
  void set_metrics(Metrics* metrics) { metrics_ = metrics; }

  uint64_t capacity_sectors() const { return capacity_; }
  bool read_only() const { return options_.read_only; }
  const std::string& path() const { return options_.path; }

 private:
  // Opens, checks and locks `path`; returns the fd and sets `size`. Throws UsageError.
  UniqueFd open_image(const std::string& path, uint64_t& size) const;
  void build_config();
  // Handles one request; returns the bytes written into the chain's writable buffers.
  uint32_t handle(const DescriptorChain& chain, const GuestMemory& mem);
  uint8_t do_read_write(bool write, uint64_t sector, std::vector<iovec>& iov, uint64_t len);
  uint8_t do_discard_or_zero(bool zero, std::span<const uint8_t> segments);
  uint8_t do_flush();

  BlockOptions options_;
  UniqueFd fd_;
  uint64_t capacity_ = 0;  // in 512-byte sectors
  std::vector<uint8_t> config_;
  LogLimiter log_limit_;
  Metrics* metrics_ = nullptr;
  void count(Metrics::Counter Metrics::*counter, uint64_t n = 1) {
    if (metrics_) Metrics::add(metrics_->*counter, n);
  }
  std::vector<iovec> iov_;
  Queue::Pop pop_;  // reused for every request
};

}  // namespace kiln::virtio
