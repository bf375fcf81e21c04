// virtio-blk over a raw image file: IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES; read-only
// drives; requests past capacity or over the advertised limits (virtio_blk_spec.h) fail with
// IOERR. I/O runs on the event-loop thread with preadv/pwritev straight into guest memory (no
// copies). An optional rate limiter (bytes of IN/OUT data, and one operation per request):
// while it is blocked the request stays on the ring and the queue is parked on the limiter's
// timer (host_event_fd()).
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/log_limiter.h"
#include "base/metrics.h"
#include "base/unique_fd.h"
#include "devices/rate_limiter/rate_limiter.h"
#include "devices/virtio/device.h"
#include "devices/virtio/queue_drain.h"

namespace kiln::virtio {

struct BlockOptions {
  std::string path;
  bool read_only = false;
  std::string id;  // GET_ID serial (at most 20 bytes); default: the file name
  std::optional<BucketSpec> bandwidth{};  // bytes
  std::optional<BucketSpec> ops{};        // requests
};

// An opened, checked and locked image. The lock (flock: exclusive, shared when read-only) is on
// `fd`, or on `lock` when the image is the one the device already had open (a re-open of the
// same file: `lock` shares the earlier open file description and so keeps its lock).
struct BlockBacking {
  UniqueFd fd;
  UniqueFd lock;
  std::string path;
  uint64_t size = 0;  // bytes
  dev_t dev = 0;
  ino_t ino = 0;
  int lock_fd() const { return lock ? lock.get() : fd.get(); }
};

class BlockDevice : public VirtioDevice {
 public:
  static constexpr uint64_t kSectorSize = 512;
  static constexpr size_t kIdBytes = 20;

  // Opens and locks the image. Throws kiln::UsageError naming the file: missing, unreadable,
  // not a regular file or block device, size not a multiple of 512, locked by another process.
  explicit BlockDevice(const BlockOptions& options);

  // Opens `path` (never blocking: O_NONBLOCK, so a FIFO cannot hang the caller), refuses
  // anything but a regular file or block device, checks its size and locks it (`read_only`:
  // shared, else exclusive). If `current` is the same file (device and inode), its lock is
  // shared instead of taken again. Throws UsageError starting with `what` (e.g. "disk PATH").
  static BlockBacking open_backing(const std::string& path, bool read_only, const std::string& what,
                                   const BlockBacking* current = nullptr);

  uint32_t device_id() const override;
  uint64_t device_features() const override;
  size_t num_queues() const override { return 1; }
  std::span<const uint8_t> config_bytes() const override { return config_; }
  // The image's capacity: a restore whose image changed size is refused (the guest's file
  // systems were mounted on the old one).
  std::optional<std::vector<uint8_t>> save_state() const override;
  void restore_state(std::span<const uint8_t> state, std::span<Queue> queues) override;

  std::string process_queue(size_t index, Queue& queue, const GuestMemory& mem) override;
  // The rate limiter's timer: a parked queue goes on.
  int host_event_fd() const override { return limiter_.fd(); }
  std::string process_host_events(std::span<Queue> queues, const GuestMemory& mem) override;

  // PATCH /drives rate_limiter (under the transport lock).
  void update_rate_limiter(const BucketUpdate& bandwidth, const BucketUpdate& ops) {
    limiter_.update(bandwidth, ops);
  }
  const RateLimiter& rate_limiter() const { return limiter_; }

  // Changing the image, in two steps so that only the swap excludes queue processing:
  // open_replacement() opens, checks and locks `path` like the first image (the same path, or
  // the same file, is fine: it is re-opened and keeps the lock) without touching what requests
  // use; call it without the transport lock, from the one thread that changes backings.
  // swap_backing() (under the transport lock) puts it in place and returns the old backing, to
  // be closed after the lock is released. The caller then signals a config change.
  BlockBacking open_replacement(const std::string& path) const;
  BlockBacking swap_backing(BlockBacking next);
  // Both steps at once (no transport lock involved; tests and single-threaded callers).
  void replace_backing(const std::string& path) { swap_backing(open_replacement(path)); }

  // Counts ops, bytes and errors into `metrics` (may be null).
  void set_metrics(Metrics* metrics) { metrics_ = metrics; }

  uint64_t capacity_sectors() const { return capacity_; }
  bool read_only() const { return options_.read_only; }
  const std::string& path() const { return backing_.path; }

 private:
  void build_config();
  std::string serve(Queue& queue, const GuestMemory& mem);
  // Whether the limiter lets this request go now (false: it waits on the ring).
  bool admit(const DescriptorChain& chain, const GuestMemory& mem);
  // Handles one request; returns the bytes written into the chain's writable buffers.
  uint32_t handle(const DescriptorChain& chain, const GuestMemory& mem);
  uint8_t do_read_write(bool write, uint64_t sector, std::vector<iovec>& iov, uint64_t len);
  uint8_t do_discard_or_zero(bool zero, std::span<const uint8_t> segments);
  uint8_t do_flush();
  // A request broke size_max/seg_max (it fails with IOERR): one rate-limited line.
  void over_limits(uint64_t len);

  BlockOptions options_;
  BlockBacking backing_;
  uint64_t capacity_ = 0;  // in 512-byte sectors
  std::vector<uint8_t> config_;
  LogLimiter log_limit_;
  Metrics* metrics_ = nullptr;
  void count(Metrics::Counter Metrics::*counter, uint64_t n = 1) {
    if (metrics_) Metrics::add(metrics_->*counter, n);
  }
  std::vector<iovec> iov_;
  QueueDrain drain_;
  RateLimiter limiter_;
};

}  // namespace kiln::virtio
