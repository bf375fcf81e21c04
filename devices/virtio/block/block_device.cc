#include "devices/virtio/block/block_device.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>

#include "base/error.h"
#include "devices/virtio/block/virtio_blk_spec.h"
#include "devices/virtio/chain_io.h"

namespace kiln::virtio {

namespace {

using namespace blk;

template <typename T>
void put(std::vector<uint8_t>& config, size_t offset, T value) {
  std::memcpy(config.data() + offset, &value, sizeof(T));
}

bool in_range(uint64_t sector, uint64_t sectors, uint64_t capacity) {
  return sector <= capacity && sectors <= capacity - sector;
}

// Whether the data iovecs (one per descriptor, as chain_iovecs makes them; header and status
// may share descriptors with the data, only the data bytes count) keep to the advertised
// limits: at most kSegMax of them, each at most kSizeMax bytes.
bool within_segment_limits(const std::vector<iovec>& iov) {
  if (iov.size() > kSegMax) return false;
  for (const iovec& v : iov)
    if (v.iov_len > kSizeMax) return false;
  return true;
}

// The request header: almost always the whole first descriptor (Linux), read in one copy;
// otherwise gathered from the readable part.
bool read_header(const GuestMemory& mem, const DescriptorChain& chain, RequestHeader& hdr) {
  const auto bytes = std::span(reinterpret_cast<uint8_t*>(&hdr), sizeof(hdr));
  if (!chain.buffers.empty() && !chain.buffers[0].device_writable &&
      chain.buffers[0].len >= sizeof(hdr)) {
    std::memcpy(&hdr, chain.buffers[0].host, sizeof(hdr));  // checked when popped
    return true;
  }
  return chain_read(mem, chain, 0, bytes);
}

// The status byte: the last byte of the writable part, normally in the last descriptor.
void write_status(const GuestMemory& mem, const DescriptorChain& chain, uint8_t status) {
  const ChainBuffer& last = chain.buffers.back();  // writable_bytes > 0: not empty
  if (last.device_writable && last.len > 0) {
    last.host[last.len - 1] = status;  // checked when popped
    return;
  }
  chain_write(mem, chain, chain.writable_bytes - 1, std::span(&status, 1));
}

}  // namespace

BlockDevice::BlockDevice(const BlockOptions& options)
    : options_(options), limiter_(options.bandwidth, options.ops) {
  backing_ = open_backing(options_.path, options_.read_only, "disk " + options_.path);
  capacity_ = backing_.size / kSectorSize;
  if (options_.id.empty()) options_.id = std::filesystem::path(options_.path).filename().string();
  if (options_.id.size() > kIdBytes) options_.id.resize(kIdBytes);
  build_config();
}

BlockBacking BlockDevice::open_backing(const std::string& path, bool read_only,
                                       const std::string& what, const BlockBacking* current) {
  auto fail = [&](const std::string& why) { return UsageError(what + ": " + why); };
  BlockBacking b;
  b.path = path;
  // O_NONBLOCK: opening a FIFO (or a device that waits for carrier) returns at once.
  b.fd = UniqueFd(
      ::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!b.fd) throw fail(std::strerror(errno));
  struct stat st {};
  if (::fstat(b.fd.get(), &st) < 0) throw fail(std::strerror(errno));
  if (S_ISREG(st.st_mode)) {
    b.size = static_cast<uint64_t>(st.st_size);
  } else if (S_ISBLK(st.st_mode)) {
    if (::ioctl(b.fd.get(), BLKGETSIZE64, &b.size) < 0) throw fail(std::strerror(errno));
  } else {
    throw fail(S_ISFIFO(st.st_mode) ? "a FIFO, not a regular file or block device"
                                    : "not a regular file or block device");
  }
  const int flags = ::fcntl(b.fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(b.fd.get(), F_SETFL, flags & ~O_NONBLOCK) < 0)
    throw fail(std::strerror(errno));
  if (b.size == 0 || b.size % kSectorSize != 0)
    throw fail(fmt::format("size {} bytes is not a non-zero multiple of 512", b.size));
  b.dev = st.st_dev;
  b.ino = st.st_ino;
  if (current && current->fd && current->dev == b.dev && current->ino == b.ino) {
    // The file this device already holds locked: keep that lock (a second flock from this
    // process would conflict with it).
    b.lock = UniqueFd(::fcntl(current->lock_fd(), F_DUPFD_CLOEXEC, 0));
    if (!b.lock) throw fail(std::strerror(errno));
    return b;
  }
  if (::flock(b.fd.get(), (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0)
    throw fail("in use by another process (locked); stop it or attach the disk read-only");
  return b;
}

BlockBacking BlockDevice::open_replacement(const std::string& path) const {
  return open_backing(path, options_.read_only, "drive path_on_host " + path, &backing_);
}

BlockBacking BlockDevice::swap_backing(BlockBacking next) {
  std::swap(backing_, next);
  capacity_ = backing_.size / kSectorSize;
  build_config();
  return next;
}

void BlockDevice::build_config() {
  config_.assign(kConfigSize, 0);
  put<uint64_t>(config_, kConfigCapacity, capacity_);
  put<uint32_t>(config_, kConfigSizeMax, kSizeMax);
  put<uint32_t>(config_, kConfigSegMax, kSegMax);
  put<uint32_t>(config_, kConfigBlkSize, static_cast<uint32_t>(kSectorSize));
  put<uint16_t>(config_, kConfigNumQueues, 1);
  put<uint32_t>(config_, kConfigMaxDiscardSectors, kMaxDiscardSectors);
  put<uint32_t>(config_, kConfigMaxDiscardSeg, 1);
  put<uint32_t>(config_, kConfigDiscardSectorAlignment, 1);
  put<uint32_t>(config_, kConfigMaxWriteZeroesSectors, kMaxWriteZeroesSectors);
  put<uint32_t>(config_, kConfigMaxWriteZeroesSeg, 1);
  put<uint8_t>(config_, kConfigWriteZeroesMayUnmap, 1);
}

uint32_t BlockDevice::device_id() const {
  return kDeviceIdBlock;
}

uint64_t BlockDevice::device_features() const {
  uint64_t f = feature(kFVersion1) | feature(kFRingEventIdx) | feature(kFRingIndirectDesc) |
               feature(kFSizeMax) | feature(kFSegMax) | feature(kFBlkSize) | feature(kFFlush);
  if (options_.read_only) {
    f |= feature(kFRo);
  } else {
    f |= feature(kFDiscard) | feature(kFWriteZeroes);
  }
  return f;
}

std::string BlockDevice::process_queue(size_t /*index*/, Queue& queue, const GuestMemory& mem) {
  if (limiter_.blocked()) return "";  // parked: the limiter's timer goes on
  return serve(queue, mem);
}

std::string BlockDevice::process_host_events(std::span<Queue> queues, const GuestMemory& mem) {
  if (!limiter_.on_timer() || queues.empty()) return "";
  return serve(queues[0], mem);
}

bool BlockDevice::admit(const DescriptorChain& chain, const GuestMemory& mem) {
  if (limiter_.unlimited()) return true;
  RequestHeader hdr{};
  uint64_t bytes = 0;  // only IN and OUT move data; a request over the limits is charged those
  if (chain.writable_bytes > 0 && read_header(mem, chain, hdr)) {
    if (hdr.type == kTypeIn) bytes = chain.writable_bytes - 1;
    if (hdr.type == kTypeOut && chain.readable_bytes >= sizeof(hdr))
      bytes = chain.readable_bytes - sizeof(hdr);
  }
  if (limiter_.consume(std::min(bytes, kMaxRequestBytes))) return true;
  count(&Metrics::block_throttled);
  return false;
}

std::string BlockDevice::serve(Queue& queue, const GuestMemory& mem) {
  return drain_
      .drain(
          queue, mem,
          [&](const std::string& error) {
            if (log_limit_.allow())
              spdlog::warn("virtio-blk {}: request failed ({} so far): {}", backing_.path,
                           log_limit_.events(), error);
          },
          [&](const DescriptorChain& chain) {
            if (!admit(chain, mem)) return DrainStep::requeue_and_stop();
            return DrainStep::used(handle(chain, mem));
          })
      .error;
}

uint32_t BlockDevice::handle(const DescriptorChain& chain, const GuestMemory& mem) {
  if (chain.writable_bytes == 0) {
    if (log_limit_.allow())
      spdlog::warn("virtio-blk {}: request without a status byte dropped", backing_.path);
    return 0;
  }
  const uint64_t status_offset = chain.writable_bytes - 1;
  uint32_t written = 0;  // data bytes placed in the writable part
  uint8_t status = kStatusIoErr;

  RequestHeader hdr{};
  if (read_header(mem, chain, hdr)) {
    const uint64_t data_in = status_offset;                        // writable data bytes
    const uint64_t data_out = chain.readable_bytes - sizeof(hdr);  // readable data bytes
    std::vector<iovec>& iov = iov_;  // reused: no allocation per request
    iov.clear();
    switch (hdr.type) {
      case kTypeIn:
        if (data_in > kMaxRequestBytes) {
          over_limits(data_in);
        } else if (chain_iovecs(mem, chain, true, 0, data_in, iov)) {
          if (!within_segment_limits(iov)) {
            over_limits(data_in);
            break;
          }
          status = do_read_write(false, hdr.sector, iov, data_in);
          if (status == kStatusOk) {
            written = static_cast<uint32_t>(data_in);
            count(&Metrics::block_read_ops);
            count(&Metrics::block_read_bytes, data_in);
          }
        }
        break;
      case kTypeOut:
        if (options_.read_only) break;
        if (data_out > kMaxRequestBytes) {
          over_limits(data_out);
        } else if (chain_iovecs(mem, chain, false, sizeof(hdr), data_out, iov)) {
          if (within_segment_limits(iov)) {
            status = do_read_write(true, hdr.sector, iov, data_out);
          } else {
            over_limits(data_out);
          }
        }
        if (status == kStatusOk) {
          count(&Metrics::block_write_ops);
          count(&Metrics::block_write_bytes, data_out);
        }
        break;
      case kTypeFlush:
        status = do_flush();
        count(&Metrics::block_flush_ops);
        break;
      case kTypeGetId: {
        std::vector<uint8_t> id(kIdBytes, 0);
        std::memcpy(id.data(), options_.id.data(), options_.id.size());
        const size_t n = std::min<uint64_t>(kIdBytes, data_in);
        if (chain_write(mem, chain, 0, std::span(id.data(), n))) {
          status = kStatusOk;
          written = static_cast<uint32_t>(n);
        }
        break;
      }
      case kTypeDiscard:
      case kTypeWriteZeroes: {
        if (options_.read_only || data_out == 0 || data_out > 16 * 16) break;
        std::vector<uint8_t> segments(data_out);
        if (chain_read(mem, chain, sizeof(hdr), segments))
          status = do_discard_or_zero(hdr.type == kTypeWriteZeroes, segments);
        break;
      }
      default:
        status = kStatusUnsupported;
        break;
    }
  }
  if (status != kStatusOk) count(&Metrics::block_errors);
  write_status(mem, chain, status);
  return written + 1;
}

void BlockDevice::over_limits(uint64_t len) {
  if (log_limit_.allow())
    spdlog::warn(
        "virtio-blk {}: request of {} bytes over the advertised size_max {} / seg_max {}, "
        "failed ({} so far)",
        backing_.path, len, kSizeMax, kSegMax, log_limit_.events());
}

uint8_t BlockDevice::do_read_write(bool write, uint64_t sector, std::vector<iovec>& iov,
                                   uint64_t len) {
  if (len % kSectorSize != 0 || !in_range(sector, len / kSectorSize, capacity_))
    return kStatusIoErr;
  if (file_transfer(backing_.fd.get(), write, iov, sector * kSectorSize) !=
      static_cast<int64_t>(len)) {
    if (log_limit_.allow())
      spdlog::warn("virtio-blk {}: {} of {} bytes at sector {} failed: {}", backing_.path,
                   write ? "write" : "read", len, sector, std::strerror(errno));
    return kStatusIoErr;
  }
  return kStatusOk;
}

uint8_t BlockDevice::do_discard_or_zero(bool zero, std::span<const uint8_t> bytes) {
  if (bytes.size() % sizeof(DiscardSegment) != 0 || bytes.size() / sizeof(DiscardSegment) != 1)
    return kStatusIoErr;  // max_discard_seg / max_write_zeroes_seg are 1
  DiscardSegment seg;
  std::memcpy(&seg, bytes.data(), sizeof(seg));
  if (seg.num_sectors > (zero ? kMaxWriteZeroesSectors : kMaxDiscardSectors) ||
      !in_range(seg.sector, seg.num_sectors, capacity_))
    return kStatusIoErr;  // over the advertised max_*_sectors, or past capacity
  if (!zero && seg.flags != 0) return kStatusUnsupported;
  const off_t offset = static_cast<off_t>(seg.sector * kSectorSize);
  const off_t len = static_cast<off_t>(uint64_t{seg.num_sectors} * kSectorSize);
  const bool punch = !zero || (seg.flags & kWriteZeroesUnmap);
  const int mode = FALLOC_FL_KEEP_SIZE | (punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);
  if (::fallocate(backing_.fd.get(), mode, offset, len) == 0) return kStatusOk;
  if (!zero) return kStatusUnsupported;  // discard is only a hint
  // The file system cannot zero ranges: write zeros (at most kMaxWriteZeroesSectors).
  std::vector<uint8_t> zeros(std::min<off_t>(len, 1 << 20), 0);
  for (off_t done = 0; done < len;) {
    const size_t n = static_cast<size_t>(std::min<off_t>(len - done, zeros.size()));
    const ssize_t w = ::pwrite(backing_.fd.get(), zeros.data(), n, offset + done);
    if (w <= 0) return kStatusIoErr;
    done += w;
  }
  return kStatusOk;
}

uint8_t BlockDevice::do_flush() {
  if (::fdatasync(backing_.fd.get()) == 0) return kStatusOk;
  spdlog::warn("virtio-blk {}: fdatasync failed: {}", backing_.path, std::strerror(errno));
  return kStatusIoErr;
}

std::optional<std::vector<uint8_t>> BlockDevice::save_state() const {
  snapshot::ByteWriter w;
  w.u16(1);
  w.u64(capacity_);
  return w.take();
}

void BlockDevice::restore_state(std::span<const uint8_t> state, std::span<Queue>) {
  const std::string what = "virtio-blk " + backing_.path + " state";
  snapshot::ByteReader r(state.data(), state.size(), what);
  r.expect_version(1);
  const uint64_t capacity = r.u64();
  r.finish();
  if (capacity != capacity_)
    throw UsageError(fmt::format(
        "drive {}: the image has {} sectors, the snapshot's guest had {}: it changed since the "
        "snapshot (restore with the image the snapshot was taken with)",
        backing_.path, capacity_, capacity));
}

}  // namespace kiln::virtio
