// net_bench: virtio-net frame throughput through Kiln's device model against a real TAP, without a
// guest or KVM, beside raw TAP read/write in the same run.
//
// The process moves into a fresh network namespace (nothing on the host is touched) and makes a
// TAP there. A host-side virtqueue driver (tests/support/virtqueue_driver.h) plays the guest:
//   TX: kBatch chains (virtio_net_hdr_v1 + frame) are published and kicked as the event loop
//       would (MmioTransport::process_queue); the device writev()s each to the TAP. Raw: the
//       same writev() on the TAP fd.
//   RX: kBatch frames are first queued in the TAP from an AF_PACKET socket (not timed); then
//       the device delivers them into posted RX buffers (MmioTransport::process_host_events, as
//       when the TAP is readable) and the driver reposts them. Raw: readv() of the same frames.
// Frames sent into the TAP go to the namespace's stack, which drops them (no address).
//
// Then the same 1514-byte TX and RX with rate limiters whose buckets never run dry (the cost of
// an unlimited bucket on each path, beside none), and TX under a 100 Mbit/s limit (achieved /
// configured: the limiter's accuracy).
//
// Usage: net_bench   (needs CAP_NET_ADMIN for the namespace)
#include <poll.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/net/net_device.h"
#include "devices/virtio/net/virtio_net_spec.h"
#include "tests/support/net_namespace.h"
#include "tests/support/virtqueue_driver.h"

namespace {

using kiln::Gpa;
using kiln::GuestMemory;
using kiln::testsupport::DriverBuffer;
using kiln::testsupport::MmioDriver;
using kiln::testsupport::PacketSocket;
using kiln::testsupport::VirtqueueDriver;
using kiln::virtio::NetDevice;
using kiln::virtio::net::NetHeader;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint32_t kBatch = 128;  // frames per kick (TX) / per TAP wake-up (RX)
constexpr uint32_t kRxBuf = 2048;
constexpr double kSeconds = 1.5;
constexpr const char* kTapName = "kilnbench0";
constexpr uint8_t kDst[6] = {0x52, 0x54, 0x00, 0x00, 0x00, 0x02};
constexpr uint8_t kSrc[6] = {0x52, 0x54, 0x00, 0x00, 0x00, 0x01};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "net_bench: %s\n", what.c_str());
  std::exit(1);
}

double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

struct Rate {
  uint64_t frames = 0;
  double seconds = 0;
  double fps() const { return static_cast<double>(frames) / seconds; }
  double gbps(size_t frame_len) const { return fps() * static_cast<double>(frame_len) * 8 / 1e9; }
};

class Bench {
 public:
  Bench()
      : mem_({{0, 64 * kMiB}}),
        dev_(std::make_shared<NetDevice>(kiln::virtio::NetOptions{kTapName, {}, {}})),
        transport_(dev_, mem_, [this] { ++irqs_; }),
        drv_(transport_),
        rx_(mem_, 0x1000, 256, 8 * kMiB, 16 * kMiB),
        tx_(mem_, 0x8000, 256, 24 * kMiB, 16 * kMiB) {
    kiln::testsupport::bring_up_quiet(kTapName);
    host_ = std::make_unique<PacketSocket>(kTapName);
    const VirtqueueDriver* queues[] = {&rx_, &tx_};
    drv_.init(kiln::virtio::feature(kiln::virtio::kFVersion1) |
                  kiln::virtio::feature(kiln::virtio::kFRingEventIdx),
              queues);
    for (uint32_t i = 0; i < kBatch; ++i) {
      const Gpa b = rx_.alloc(kRxBuf, 64);
      const DriverBuffer buf[] = {{b, kRxBuf, true}};
      rx_heads_.push_back(rx_.add_chain(buf));
      rx_bufs_.push_back(b);
    }
  }

  Rate kiln_tx(const std::vector<uint8_t>& frame) {
    tx_.reset_allocator();
    std::vector<uint16_t> heads;
    const Gpa hdr = tx_.alloc_obj(NetHeader{});
    for (uint32_t i = 0; i < kBatch; ++i) {
      const Gpa f = tx_.alloc_bytes(frame);
      const DriverBuffer bufs[] = {{hdr, sizeof(NetHeader), false},
                                   {f, static_cast<uint32_t>(frame.size()), false}};
      heads.push_back(tx_.add_chain(bufs));
    }
    Rate r;
    const auto start = Clock::now();
    while (since(start) < kSeconds) {
      for (uint16_t h : heads) tx_.publish(h);
      drv_.kick(NetDevice::kTxQueue);
      for (uint32_t i = 0; i < kBatch; ++i)
        if (!tx_.pop_used()) die("TX chain not completed");
      tx_.set_used_event(tx_.last_used());
      r.frames += kBatch;
    }
    r.seconds = since(start);
    return r;
  }

  Rate raw_tx(const std::vector<uint8_t>& frame) {
    NetHeader hdr{};
    iovec iov[] = {{&hdr, sizeof(hdr)}, {const_cast<uint8_t*>(frame.data()), frame.size()}};
    Rate r;
    const auto start = Clock::now();
    while (since(start) < kSeconds) {
      for (uint32_t i = 0; i < kBatch; ++i)
        if (::writev(dev_->tap().fd(), iov, 2) < 0) die("raw TAP writev failed");
      r.frames += kBatch;
    }
    r.seconds = since(start);
    return r;
  }

  Rate kiln_rx(const std::vector<uint8_t>& frame) {
    Rate r;
    for (const auto start = Clock::now(); since(start) < kSeconds;) {
      fill_tap(frame);
      for (uint16_t h : rx_heads_) rx_.publish(h);
      const auto t0 = Clock::now();
      drv_.kick(NetDevice::kRxQueue);  // new buffers: the device drains the TAP into them
      uint32_t got = 0;
      while (auto e = rx_.pop_used()) {
        if (e->len != sizeof(NetHeader) + frame.size()) die("RX frame of a wrong length");
        ++got;
      }
      rx_.set_used_event(rx_.last_used());
      r.seconds += since(t0);
      if (got != kBatch) die("RX: " + std::to_string(got) + " of " + std::to_string(kBatch));
      r.frames += got;
    }
    std::vector<uint8_t> check(frame.size());
    mem_.read(rx_bufs_[0] + sizeof(NetHeader), check);
    if (check != frame) die("RX frame content differs");
    return r;
  }

  Rate raw_rx(const std::vector<uint8_t>& frame) {
    NetHeader hdr{};
    std::vector<uint8_t> buf(kRxBuf);
    iovec iov[] = {{&hdr, sizeof(hdr)}, {buf.data(), buf.size()}};
    Rate r;
    for (const auto start = Clock::now(); since(start) < kSeconds;) {
      fill_tap(frame);
      const auto t0 = Clock::now();
      for (uint32_t i = 0; i < kBatch; ++i)
        if (::readv(dev_->tap().fd(), iov, 2) != static_cast<ssize_t>(sizeof(hdr) + frame.size()))
          die("raw TAP readv failed");
      r.seconds += since(t0);
      r.frames += kBatch;
    }
    return r;
  }

  // New buckets for all four (PATCH), and the wake-up the update gives the device.
  void limit(const kiln::BucketUpdate& rx, const kiln::BucketUpdate& tx) {
    dev_->update_rate_limiters(rx, rx, tx, tx);
    wait_host_event();
  }

  // TX of 1514-byte frames under the current TX limit for ~kSeconds after the first bucket is
  // spent (`spend` frames); returns bytes per second.
  double limited_tx(const std::vector<uint8_t>& frame, uint64_t spend) {
    tx_.reset_allocator();
    const Gpa hdr = tx_.alloc_obj(NetHeader{});
    const Gpa f = tx_.alloc_bytes(frame);
    const DriverBuffer bufs[] = {{hdr, sizeof(NetHeader), false},
                                 {f, static_cast<uint32_t>(frame.size()), false}};
    const uint16_t head = tx_.add_chain(bufs);
    uint64_t sent = 0;
    auto one = [&] {
      tx_.publish(head);
      drv_.kick(NetDevice::kTxQueue);
      while (!tx_.pop_used()) wait_host_event();  // parked on the limiter's timer
      tx_.set_used_event(tx_.last_used());
      ++sent;
    };
    while (sent < spend) one();
    const uint64_t first = sent;
    const auto start = Clock::now();
    while (since(start) < kSeconds) one();
    return static_cast<double>(sent - first) * static_cast<double>(frame.size()) / since(start);
  }

  uint64_t irqs() const { return irqs_; }

 private:
  void wait_host_event() {
    pollfd p{dev_->host_event_fd(), POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) die("the device's host fd did not fire");
    transport_.process_host_events();
  }

  // Queues kBatch frames in the TAP (from the host side) before the timed part.
  void fill_tap(const std::vector<uint8_t>& frame) {
    for (uint32_t i = 0; i < kBatch; ++i) host_->send(frame);
  }

  GuestMemory mem_;
  std::shared_ptr<NetDevice> dev_;
  uint64_t irqs_ = 0;
  kiln::virtio::MmioTransport transport_;
  MmioDriver drv_;
  VirtqueueDriver rx_, tx_;
  std::unique_ptr<PacketSocket> host_;
  std::vector<uint16_t> rx_heads_;
  std::vector<Gpa> rx_bufs_;
};

}  // namespace

int main() {
  if (::unshare(CLONE_NEWNET) != 0)
    die(std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno) +
        " (needs CAP_NET_ADMIN: run as root)");
  Bench bench;
  std::printf("net_bench: TAP %s in a private network namespace, batches of %u, no guest/KVM\n",
              kTapName, kBatch);
  std::printf("%-14s %12s %9s %12s %9s %10s\n", "workload", "Kiln fr/s", "Gbit/s", "raw fr/s",
              "Gbit/s", "Kiln/raw");
  for (size_t len : {size_t{60}, size_t{1514}}) {
    const auto frame = kiln::testsupport::test_frame(kDst, kSrc, len - 14);
    const Rate ktx = bench.kiln_tx(frame), rtx = bench.raw_tx(frame);
    const Rate krx = bench.kiln_rx(frame), rrx = bench.raw_rx(frame);
    for (auto [name, k, r] : {std::tuple{"TX", ktx, rtx}, std::tuple{"RX", krx, rrx}}) {
      const std::string label = std::string(name) + " " + std::to_string(len) + " B";
      std::printf("%-14s %12.0f %9.2f %12.0f %9.2f %10.2f\n", label.c_str(), k.fps(), k.gbps(len),
                  r.fps(), r.gbps(len), k.fps() / r.fps());
    }
  }
  std::printf("interrupts raised: %llu\n", static_cast<unsigned long long>(bench.irqs()));

  // Rate limiters: unlimited buckets against none (alternated, the best of two each), then a
  // 100 Mbit/s TX limit (a 1.25 MB bucket refilled every 100 ms).
  const auto frame = kiln::testsupport::test_frame(kDst, kSrc, 1514 - 14);
  const kiln::BucketSpec huge{(uint64_t{1} << 63) - 1, std::chrono::milliseconds(1), 0};
  double tx[2] = {0, 0}, rx[2] = {0, 0};
  for (int round = 0; round < 4; ++round) {
    const bool limited = round % 2 == 1;
    bench.limit(limited ? kiln::BucketUpdate::set(huge) : kiln::BucketUpdate::disable(),
                limited ? kiln::BucketUpdate::set(huge) : kiln::BucketUpdate::disable());
    tx[limited] = std::max(tx[limited], bench.kiln_tx(frame).fps());
    rx[limited] = std::max(rx[limited], bench.kiln_rx(frame).fps());
  }
  std::printf("%-24s TX %.3f, RX %.3f (frames/s with an unlimited bucket / without, 1514 B)\n",
              "rate limiter cost", tx[1] / tx[0], rx[1] / rx[0]);
  constexpr double kRate = 12.5e6;  // bytes/s
  bench.limit(kiln::BucketUpdate::disable(),
              kiln::BucketUpdate::set({1'250'000, std::chrono::milliseconds(100), 0}));
  const double achieved = bench.limited_tx(frame, 1'250'000 / frame.size() + 1);
  std::printf("%-24s %.3f (achieved / configured, TX 1514 B at 100 Mbit/s)\n",
              "rate limiter accuracy", achieved / kRate);
  return 0;
}
