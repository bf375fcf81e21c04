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

#include "devices/virtio/chain_io.h"
#include "vmm/error.h"

namespace kiln::virtio {

namespace {

// Feature bits (virtio spec 5.2.3).
constexpr uint32_t kFSizeMax = 1;
constexpr uint32_t kFSegMax = 2;
constexpr uint32_t kFRo = 5;
constexpr uint32_t kFBlkSize = 6;
constexpr uint32_t kFFlush = 9;
constexpr uint32_t kFDiscard = 13;
constexpr uint32_t kFWriteZeroes = 14;

// Request types and status values.
constexpr uint32_t kTypeIn = 0;
constexpr uint32_t kTypeOut = 1;
constexpr uint32_t kTypeFlush = 4;
constexpr uint32_t kTypeGetId = 8;
constexpr uint32_t kTypeDiscard = 11;
constexpr uint32_t kTypeWriteZeroes = 13;
constexpr uint8_t kStatusOk = 0;
constexpr uint8_t kStatusIoErr = 1;
constexpr uint8_t kStatusUnsupported = 2;

constexpr uint32_t kSizeMax = 1u << 20;
constexpr uint32_t kSegMax = Queue::kMaxSize - 2;  // header and status take two descriptors
constexpr uint32_t kMaxDiscardSectors = 1u << 22;  // 2 GiB per segment
constexpr uint32_t kWriteZeroesUnmap = 1;

struct RequestHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
struct DiscardSegment {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};
static_assert(sizeof(RequestHeader) == 16 && sizeof(DiscardSegment) == 16);

template <typename T>
void put(std::vector<uint8_t>& config, size_t offset, T value) {
  std::memcpy(config.data() + offset, &value, sizeof(T));
}

bool in_range(uint64_t sector, uint64_t sectors, uint64_t capacity) {
  return sector <= capacity && sectors <= capacity - sector;
}

// preadv/pwritev until the whole iovec list is transferred.
bool transfer_all(int fd, bool write, std::vector<iovec> iov, uint64_t offset) {
  size_t first = 0;
  while (first < iov.size()) {
    const int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    const ssize_t n = write ? ::pwritev(fd, &iov[first], count, static_cast<off_t>(offset))
                            : ::preadv(fd, &iov[first], count, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // error, or end of file inside capacity (image shrank)
    offset += static_cast<uint64_t>(n);
    size_t left = static_cast<size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (left) {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return true;
}

}  // namespace

BlockDevice::BlockDevice(const BlockOptions& options) : options_(options) {
  uint64_t size = 0;
  fd_ = open_image(options_.path, size);
  capacity_ = size / kSectorSize;
  if (options_.id.empty()) options_.id = std::filesystem::path(options_.path).filename().string();
  if (options_.id.size() > kIdBytes) options_.id.resize(kIdBytes);
  build_config();
}

UniqueFd BlockDevice::open_image(const std::string& path, uint64_t& size) const {
  auto fail = [&](const std::string& why) { return UsageError("disk " + path + ": " + why); };
  UniqueFd fd(::open(path.c_str(), (options_.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!fd) throw fail(std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) throw fail(std::strerror(errno));
  if (S_ISREG(st.st_mode)) {
    size = static_cast<uint64_t>(st.st_size);
  } else if (S_ISBLK(st.st_mode)) {
    if (::ioctl(fd.get(), BLKGETSIZE64, &size) < 0) throw fail(std::strerror(errno));
  } else {
    throw fail("not a regular file or block device");
  }
  if (size == 0 || size % kSectorSize != 0)
    throw fail(fmt::format("size {} bytes is not a non-zero multiple of 512", size));
  if (::flock(fd.get(), (options_.read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0)
    throw fail("in use by another process (locked); stop it or attach the disk read-only");
  return fd;
}

void BlockDevice::replace_backing(const std::string& path) {
  uint64_t size = 0;
  UniqueFd fd = open_image(path, size);
  fd_ = std::move(fd);
  options_.path = path;
  capacity_ = size / kSectorSize;
  build_config();
}

void BlockDevice::build_config() {
  config_.assign(60, 0);
  put<uint64_t>(config_, 0, capacity_);
  put<uint32_t>(config_, 8, kSizeMax);
  put<uint32_t>(config_, 12, kSegMax);
  put<uint32_t>(config_, 20, kSectorSize);  // blk_size
  put<uint16_t>(config_, 34, 1);            // num_queues
  put<uint32_t>(config_, 36, kMaxDiscardSectors);
  put<uint32_t>(config_, 40, 1);  // max_discard_seg
  put<uint32_t>(config_, 44, 1);  // discard_sector_alignment
  put<uint32_t>(config_, 48, kMaxDiscardSectors);
  put<uint32_t>(config_, 52, 1);  // max_write_zeroes_seg
  put<uint8_t>(config_, 56, 1);   // write_zeroes_may_unmap
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

void BlockDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  if (offset >= config_.size()) return;
  const size_t n = std::min<size_t>(data.size(), config_.size() - offset);
  std::memcpy(data.data(), config_.data() + offset, n);
}

std::string BlockDevice::process_queue(size_t /*index*/, Queue& queue, const GuestMemory& mem) {
  do {
    for (;;) {
      Queue::Pop& pop = pop_;
      queue.pop(mem, pop);
      if (pop.kind == Queue::Pop::Kind::kEmpty) break;
      if (pop.kind == Queue::Pop::Kind::kBrokenRing) return pop.error;
      if (pop.kind == Queue::Pop::Kind::kBadChain) {
        if (log_limit_.allow())
          spdlog::warn("virtio-blk {}: request failed ({} so far): {}", options_.path,
                       log_limit_.events(), pop.error);
        continue;
      }
      const uint32_t written = handle(pop.chain, mem);
      if (!queue.add_used(mem, pop.chain.head, written)) return "used ring is outside guest memory";
    }
  } while (queue.enable_notification(mem));
  return "";
}

uint32_t BlockDevice::handle(const DescriptorChain& chain, const GuestMemory& mem) {
  if (chain.writable_bytes == 0) {
    if (log_limit_.allow())
      spdlog::warn("virtio-blk {}: request without a status byte dropped", options_.path);
    return 0;
  }
  const uint64_t status_offset = chain.writable_bytes - 1;
  uint32_t written = 0;  // data bytes placed in the writable part
  uint8_t status = kStatusIoErr;

  RequestHeader hdr{};
  if (chain_read(mem, chain, 0, std::span(reinterpret_cast<uint8_t*>(&hdr), sizeof(hdr)))) {
    const uint64_t data_in = status_offset;                        // writable data bytes
    const uint64_t data_out = chain.readable_bytes - sizeof(hdr);  // readable data bytes
    std::vector<iovec>& iov = iov_;  // reused: no allocation per request
    iov.clear();
    switch (hdr.type) {
      case kTypeIn:
        if (chain_iovecs(mem, chain, true, 0, data_in, iov)) {
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
        if (chain_iovecs(mem, chain, false, sizeof(hdr), data_out, iov))
          status = do_read_write(true, hdr.sector, iov, data_out);
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
  chain_write(mem, chain, status_offset, std::span(&status, 1));
  return written + 1;
}

uint8_t BlockDevice::do_read_write(bool write, uint64_t sector, std::vector<iovec>& iov,
                                   uint64_t len) {
  if (len % kSectorSize != 0 || !in_range(sector, len / kSectorSize, capacity_))
    return kStatusIoErr;
  if (!transfer_all(fd_.get(), write, iov, sector * kSectorSize)) {
    if (log_limit_.allow())
      spdlog::warn("virtio-blk {}: {} of {} bytes at sector {} failed: {}", options_.path,
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
  if (seg.num_sectors > kMaxDiscardSectors || !in_range(seg.sector, seg.num_sectors, capacity_))
    return kStatusIoErr;
  if (!zero && seg.flags != 0) return kStatusUnsupported;
  const off_t offset = static_cast<off_t>(seg.sector * kSectorSize);
  const off_t len = static_cast<off_t>(uint64_t{seg.num_sectors} * kSectorSize);
  const bool punch = !zero || (seg.flags & kWriteZeroesUnmap);
  const int mode = FALLOC_FL_KEEP_SIZE | (punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);
  if (::fallocate(fd_.get(), mode, offset, len) == 0) return kStatusOk;
  if (!zero) return kStatusUnsupported;  // discard is only a hint
  // The file system cannot zero ranges: write zeros.
  std::vector<uint8_t> zeros(std::min<off_t>(len, 1 << 20), 0);
  for (off_t done = 0; done < len;) {
    const size_t n = static_cast<size_t>(std::min<off_t>(len - done, zeros.size()));
    const ssize_t w = ::pwrite(fd_.get(), zeros.data(), n, offset + done);
    if (w <= 0) return kStatusIoErr;
    done += w;
  }
  return kStatusOk;
}

uint8_t BlockDevice::do_flush() {
  if (::fdatasync(fd_.get()) == 0) return kStatusOk;
  spdlog::warn("virtio-blk {}: fdatasync failed: {}", options_.path, std::strerror(errno));
  return kStatusIoErr;
}

}  // namespace kiln::virtio
