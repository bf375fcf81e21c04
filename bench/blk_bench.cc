// blk_bench: virtio-blk request throughput through Kiln's device model, without a guest or KVM.
//
// A host-side virtqueue driver (tests/support/virtqueue_driver.h) plays the guest: it fills the
// queue with requests, "kicks" by calling MmioTransport::process_queue(0) as the event loop
// would, and reaps the used ring. The same offsets are then read with plain pread() on the same
// file, so the ratio shows what the device model costs on top of the system call. Both sides
// read from the page cache (the file is warmed first; no O_DIRECT).
//
// Also: the same random reads through a rate limiter whose buckets never run dry (the cost of
// an unlimited bucket on the request path, beside none), and sequential reads under a 64 MB/s
// bandwidth limit (achieved / configured: the limiter's accuracy).
//
// Usage: blk_bench [--only=rand|seq] [image]   (default: both workloads, a 256 MiB temporary
// file). --only runs one workload (e.g. to profile it alone under callgrind).
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "devices/virtio/block/block_device.h"
#include "devices/virtio/block/virtio_blk_spec.h"
#include "devices/virtio/mmio_transport.h"
#include "tests/support/virtqueue_driver.h"

namespace {

using kiln::Gpa;
using kiln::GuestMemory;
using kiln::testsupport::DriverBuffer;
using kiln::testsupport::MmioDriver;
using kiln::testsupport::TempFile;
using kiln::testsupport::VirtqueueDriver;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kDefaultSize = 256 * kMiB;
constexpr double kSeconds = 2.0;

using BlkHeader = kiln::virtio::blk::RequestHeader;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "blk_bench: %s\n", what.c_str());
  std::exit(1);
}

double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Reads the whole file once so that both sides below hit the page cache.
void warm(int fd, uint64_t size) {
  std::vector<uint8_t> buf(kMiB);
  for (uint64_t off = 0; off < size; off += buf.size())
    if (::pread(fd, buf.data(), buf.size(), static_cast<off_t>(off)) <= 0) die("warming pread");
}

// The device, its transport and a queue of 256 with `depth` prebuilt IN requests of
// `request_bytes` each (header, the data in buffers of at most size_max, status byte), as a
// Linux guest builds them.
class KilnSide {
 public:
  KilnSide(const std::string& path, uint32_t depth, uint32_t request_bytes,
           std::optional<kiln::BucketSpec> bandwidth = std::nullopt,
           std::optional<kiln::BucketSpec> ops = std::nullopt)
      : mem_({{0, (depth * (request_bytes + 4096) + 4 * kMiB + 0xfff) & ~uint64_t{0xfff}}}),
        dev_(std::make_shared<kiln::virtio::BlockDevice>(
            kiln::virtio::BlockOptions{path, /*read_only=*/true, "", bandwidth, ops})),
        transport_(dev_, mem_, [this] { ++irqs_; }),
        drv_(transport_),
        q_(mem_, 0x1000, 256, kMiB, mem_.total_size() - kMiB) {
    drv_.init(~uint64_t{0}, q_);
    for (uint32_t i = 0; i < depth; ++i) {
      Slot s;
      s.header = q_.alloc(sizeof(BlkHeader));
      s.data = q_.alloc(request_bytes, 4096);
      s.status = q_.alloc(1);
      std::vector<DriverBuffer> bufs{{s.header, sizeof(BlkHeader), false}};
      for (uint32_t off = 0; off < request_bytes; off += kiln::virtio::blk::kSizeMax)
        bufs.push_back(
            {s.data + off, std::min(request_bytes - off, kiln::virtio::blk::kSizeMax), true});
      bufs.push_back({s.status, 1, true});
      s.head = q_.add_chain(bufs);
      slots_.push_back(s);
    }
  }

  // Reads sectors[0..n) in batches of `depth` per kick; returns false on a failed request.
  bool run(std::span<const uint64_t> sectors, size_t n) {
    for (size_t done = 0; done < n;) {
      const size_t batch = std::min(slots_.size(), n - done);
      for (size_t i = 0; i < batch; ++i) {
        mem_.write_obj(slots_[i].header, BlkHeader{0, 0, sectors[done + i]});
        q_.publish(slots_[i].head);
      }
      drv_.kick();
      for (size_t i = 0; i < batch; ++i) {
        auto e = q_.pop_used();
        while (!e) {  // rate-limited: what the event loop does when the limiter's timer fires
          pollfd p{dev_->host_event_fd(), POLLIN, 0};
          if (::poll(&p, 1, 5000) != 1) return false;
          transport_.process_host_events();
          e = q_.pop_used();
        }
      }
      for (size_t i = 0; i < batch; ++i)
        if (mem_.read_obj<uint8_t>(slots_[i].status) != 0) return false;
      q_.set_used_event(q_.last_used());  // like Linux: interrupt me for the next completion
      done += batch;
    }
    return true;
  }
  std::vector<uint8_t> data(size_t slot, size_t len) const {
    std::vector<uint8_t> out(len);
    mem_.read(slots_[slot].data, out);
    return out;
  }
  uint64_t irqs() const { return irqs_; }

 private:
  struct Slot {
    uint16_t head;
    Gpa header, data, status;
  };
  GuestMemory mem_;
  std::shared_ptr<kiln::virtio::BlockDevice> dev_;
  uint64_t irqs_ = 0;
  kiln::virtio::MmioTransport transport_;
  MmioDriver drv_;
  VirtqueueDriver q_;
  std::vector<Slot> slots_;
};

// pread of the same sectors, rotating over `depth` buffers like the Kiln side.
bool run_pread(int fd, const std::vector<uint64_t>& sectors, size_t n, uint32_t depth,
               uint32_t request_bytes) {
  std::vector<std::vector<uint8_t>> bufs(depth, std::vector<uint8_t>(request_bytes));
  for (size_t i = 0; i < n; ++i) {
    auto& b = bufs[i % depth];
    if (::pread(fd, b.data(), request_bytes, static_cast<off_t>(sectors[i] * 512)) !=
        static_cast<ssize_t>(request_bytes))
      return false;
  }
  return true;
}

struct Result {
  size_t ops;
  double kiln_s, pread_s;
  uint64_t irqs;
};

// Kiln runs for ~kSeconds (whole batches); pread then does the same count at the same offsets.
// Requests through a bucket that never runs dry (as large as a bucket may be, refilled every
// millisecond), beside the same without one: IOPS with / without.
double unlimited_bucket_ratio(const std::string& path, const std::vector<uint64_t>& sectors,
                              uint32_t depth, uint32_t request_bytes) {
  const kiln::BucketSpec huge{(uint64_t{1} << 63) - 1, std::chrono::milliseconds(1), 0};
  double iops[2] = {0, 0};
  for (int round = 0; round < 4; ++round) {  // alternated, the best of two each
    const bool limited = round % 2 == 1;
    KilnSide kiln(path, depth, request_bytes, limited ? std::optional(huge) : std::nullopt,
                  limited ? std::optional(huge) : std::nullopt);
    size_t ops = 0;
    const auto start = Clock::now();
    while (since(start) < kSeconds / 2 && ops + depth <= sectors.size()) {
      if (!kiln.run(std::span(sectors).subspan(ops, depth), depth)) die("request failed");
      ops += depth;
    }
    iops[limited] = std::max(iops[limited], static_cast<double>(ops) / since(start));
  }
  return iops[1] / iops[0];
}

// 1 MiB reads under a 64 MB/s limit (a bucket of 6.4 MB refilled every 100 ms) for ~2 s after
// the first bucket is spent: achieved / configured rate.
double limited_accuracy(const std::string& path, const std::vector<uint64_t>& sectors) {
  constexpr double kRate = 64e6;
  const kiln::BucketSpec bucket{6'400'000, std::chrono::milliseconds(100), 0};
  KilnSide kiln(path, 1, kMiB, bucket);
  size_t i = 0;
  while (i < 7) {  // spend the full bucket first
    if (!kiln.run(std::span(sectors).subspan(i, 1), 1)) die("limited request failed");
    ++i;
  }
  const size_t first = i;
  const auto start = Clock::now();
  while (since(start) < kSeconds) {
    if (!kiln.run(std::span(sectors).subspan(i % sectors.size(), 1), 1))
      die("limited request failed");
    ++i;
  }
  return static_cast<double>(i - first) * kMiB / since(start) / kRate;
}

Result measure(const std::string& path, int fd, const std::vector<uint64_t>& sectors,
               uint32_t depth, uint32_t request_bytes) {
  KilnSide kiln(path, depth, request_bytes);
  if (!kiln.run(sectors, depth)) die("warm-up request failed");  // warm-up batch
  size_t ops = 0;
  const auto start = Clock::now();
  while (since(start) < kSeconds && ops + depth <= sectors.size()) {
    if (!kiln.run(std::span(sectors).subspan(ops, depth), depth)) die("request failed");
    ops += depth;
  }
  const double kiln_s = since(start);

  // Spot check: the last batch's data equals what pread returns.
  std::vector<uint8_t> check(request_bytes);
  if (::pread(fd, check.data(), request_bytes, static_cast<off_t>(sectors[ops - depth] * 512)) !=
          static_cast<ssize_t>(request_bytes) ||
      kiln.data(0, request_bytes) != check)
    die("data mismatch between Kiln and pread");

  run_pread(fd, sectors, depth, depth, request_bytes);  // same warm-up
  const auto p0 = Clock::now();
  if (!run_pread(fd, sectors, ops, depth, request_bytes)) die("pread failed");
  return {ops, kiln_s, since(p0), kiln.irqs()};
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<TempFile> temp;
  std::string path;
  bool rand_wanted = true, seq_wanted = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("usage: blk_bench [--only=rand|seq] [image]\n");
      return 0;
    }
    if (arg == "--only=rand") {
      seq_wanted = false;
    } else if (arg == "--only=seq") {
      rand_wanted = false;
    } else if (arg.starts_with("--")) {
      std::fprintf(stderr, "blk_bench: unknown option %s (--only=rand or --only=seq)\n",
                   arg.c_str());
      return 2;
    } else {
      path = arg;
    }
  }
  if (path.empty()) {
    temp = std::make_unique<TempFile>(kDefaultSize, "kiln-blk-bench");
    path = temp->path();
    std::vector<uint8_t> chunk(kMiB);
    std::mt19937_64 rng(1);
    for (uint64_t off = 0; off < kDefaultSize; off += kMiB) {
      for (size_t i = 0; i < chunk.size(); i += 8) {
        const uint64_t v = rng();
        std::memcpy(&chunk[i], &v, 8);
      }
      temp->write_at(off, chunk);
    }
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) die(path + ": " + std::strerror(errno));
  const off_t size_or_err = ::lseek(fd, 0, SEEK_END);
  if (size_or_err < static_cast<off_t>(kMiB)) die(path + ": need at least 1 MiB");
  const uint64_t size = static_cast<uint64_t>(size_or_err);
  warm(fd, size);

  // 4 KiB random reads, 4 KiB-aligned, queue depth 32.
  constexpr uint32_t kRandDepth = 32, kRandBytes = 4096;
  std::vector<uint64_t> rand_sectors(4'000'000);
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<uint64_t> block(0, size / kRandBytes - 1);
  for (auto& s : rand_sectors) s = block(rng) * (kRandBytes / 512);
  Result r{};
  if (rand_wanted) r = measure(path, fd, rand_sectors, kRandDepth, kRandBytes);

  // 1 MiB sequential reads, wrapping around the file, queue depth 8.
  constexpr uint32_t kSeqDepth = 8, kSeqBytes = kMiB;
  std::vector<uint64_t> seq_sectors(200'000);
  const uint64_t chunks = size / kSeqBytes;
  for (size_t i = 0; i < seq_sectors.size(); ++i) seq_sectors[i] = (i % chunks) * (kSeqBytes / 512);
  Result s{};
  if (seq_wanted) s = measure(path, fd, seq_sectors, kSeqDepth, kSeqBytes);
  ::close(fd);
  const double bucket_ratio =
      rand_wanted ? unlimited_bucket_ratio(path, rand_sectors, kRandDepth, kRandBytes) : 0;
  const double accuracy = seq_wanted ? limited_accuracy(path, seq_sectors) : 0;

  const double r_kiln = static_cast<double>(r.ops) / r.kiln_s;
  const double r_pread = static_cast<double>(r.ops) / r.pread_s;
  const double s_kiln = static_cast<double>(s.ops) * kSeqBytes / 1e6 / s.kiln_s;
  const double s_pread = static_cast<double>(s.ops) * kSeqBytes / 1e6 / s.pread_s;
  std::printf("blk_bench: %s, %llu MiB, page cache (warm), no guest/KVM\n", path.c_str(),
              static_cast<unsigned long long>(size / kMiB));
  std::printf("%-26s %9s %14s %14s %11s %8s\n", "workload", "ops", "Kiln", "pread", "Kiln/pread",
              "irqs");
  if (rand_wanted)
    std::printf("%-26s %9zu %9.0f IOPS %9.0f IOPS %11.2f %8llu\n", "4KiB rand read QD32", r.ops,
                r_kiln, r_pread, r_kiln / r_pread, static_cast<unsigned long long>(r.irqs));
  if (seq_wanted)
    std::printf("%-26s %9zu %9.0f MB/s %9.0f MB/s %11.2f %8llu\n", "1MiB seq read QD8", s.ops,
                s_kiln, s_pread, s_kiln / s_pread, static_cast<unsigned long long>(s.irqs));
  if (rand_wanted)
    std::printf("%-26s %11.3f (IOPS with an unlimited bucket / without, 4KiB rand QD32)\n",
                "rate limiter cost", bucket_ratio);
  if (seq_wanted)
    std::printf("%-26s %11.3f (achieved / configured, 1MiB reads at 64 MB/s)\n",
                "rate limiter accuracy", accuracy);
  return 0;
}
