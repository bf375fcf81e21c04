// vsock_bench: virtio-vsock stream throughput through Kiln's device model and Unix-socket muxer,
// without a guest or KVM.
//
// A host-side virtqueue driver (tests/support/virtqueue_driver.h) plays the guest driver: it
// opens a guest-initiated connection to port 5000 (Kiln connects to <uds>_5000, served by a
// peer thread), then either sends 64 KiB RW packets as fast as Kiln's credit allows while the
// peer reads and discards (guest -> host), or keeps 64 KiB rx buffers posted while the peer
// writes (host -> guest), crediting what it consumed. "Kicks" and host events are delivered by
// calling the transport as the event loop would. The same byte count then goes through a plain
// Unix socket between two threads, so the ratio shows what the device model costs.
//
// Usage: vsock_bench [MiB per direction, default 512]
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/vsock/packet.h"
#include "devices/virtio/vsock/vsock_device.h"
#include "tests/support/unix_peer.h"
#include "tests/support/virtqueue_driver.h"

namespace {

using kiln::Gpa;
using kiln::GuestMemory;
using kiln::UniqueFd;
using kiln::testsupport::DriverBuffer;
using kiln::testsupport::MmioDriver;
using kiln::testsupport::TempDir;
using kiln::testsupport::VirtqueueDriver;
using namespace kiln::virtio::vsock;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint32_t kPayload = 64 * 1024;
constexpr uint32_t kGuestBufAlloc = 4 * kMiB;
constexpr int kBuffers = 32;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "vsock_bench: %s\n", what.c_str());
  std::exit(1);
}

double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Reads and discards until EOF; returns the byte count.
uint64_t drain(int fd) {
  std::vector<char> buf(256 * 1024);
  uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) return total;
    total += static_cast<uint64_t>(n);
  }
}
void pour(int fd, uint64_t bytes) {
  std::vector<char> buf(256 * 1024, 'k');
  for (uint64_t done = 0; done < bytes;) {
    const size_t n = std::min<uint64_t>(buf.size(), bytes - done);
    if (!kiln::testsupport::write_all(fd, buf.data(), n)) return;
    done += n;
  }
}

class Bench {
 public:
  explicit Bench(const std::string& uds)
      : dev_(std::make_shared<kiln::virtio::VsockDevice>(kiln::virtio::VsockOptions{3, uds})),
        transport_(dev_, mem_, [] {}),
        drv_(transport_) {
    const VirtqueueDriver* queues[] = {&rx_, &tx_, &ev_};
    drv_.init(~uint64_t{0}, queues);
    for (int i = 0; i < kBuffers; ++i) {
      const Gpa rb = rx_.alloc(sizeof(PacketHeader) + kPayload, 4096);
      rx_buf_[rx_.add_chain(
          std::vector<DriverBuffer>{{rb, sizeof(PacketHeader) + kPayload, true}})] = rb;
      tx_slots_.push_back(tx_.alloc(sizeof(PacketHeader) + kPayload, 4096));
    }
    for (auto& [head, gpa] : rx_buf_) rx_.publish(head);
    drv_.kick(kRxQueue);
  }

  void connect() {
    send(kOpRequest, 0);
    while (!peer_response_) pump(true);
  }

  // Guest -> host: `bytes` in 64 KiB RW packets within Kiln's credit.
  void send_bytes(uint64_t bytes) {
    uint64_t sent = 0;
    while (sent < bytes) {
      const uint32_t in_flight = tx_cnt_ - kiln_fwd_cnt_;
      const uint32_t credit = kiln_buf_alloc_ - in_flight;
      if (credit >= kPayload && tx_.free_descriptors() > 0) {
        send(kOpRw, kPayload);
        sent += kPayload;
        continue;
      }
      pump(true);
    }
  }
  // Host -> guest: consumes until `bytes` arrived.
  void receive_bytes(uint64_t bytes) {
    while (received_ < bytes) pump(true);
  }

 private:
  PacketHeader header(uint16_t op, uint32_t len) const {
    PacketHeader h{};
    h.src_cid = 3;
    h.dst_cid = kHostCid;
    h.src_port = 1024;
    h.dst_port = 5000;
    h.len = len;
    h.type = kTypeStream;
    h.op = op;
    h.buf_alloc = kGuestBufAlloc;
    h.fwd_cnt = static_cast<uint32_t>(received_);
    return h;
  }
  void send(uint16_t op, uint32_t len) {
    while (tx_.pop_used()) {
    }
    const Gpa slot = tx_slots_[next_slot_++ % tx_slots_.size()];
    mem_.write_obj(slot, header(op, len));
    tx_.submit({{slot, static_cast<uint32_t>(sizeof(PacketHeader) + len), false}});
    if (op == kOpRw) tx_cnt_ += len;
    told_ = static_cast<uint32_t>(received_);
    drv_.kick(kTxQueue);
  }
  // Delivers host events (waiting for them if `block`) and consumes rx packets.
 public:
  void pump(bool block) {
    if (kiln::testsupport::wait_fd(dev_->host_event_fd(), POLLIN, block ? 1000 : 0))
      transport_.process_host_events();
    bool reposted = false;
    while (auto e = rx_.pop_used()) {
      const Gpa buf = rx_buf_.at(static_cast<uint16_t>(e->id));
      const PacketHeader h = *mem_.read_obj<PacketHeader>(buf);
      kiln_buf_alloc_ = h.buf_alloc;
      kiln_fwd_cnt_ = h.fwd_cnt;
      if (h.op == kOpResponse) peer_response_ = true;
      if (h.op == kOpRst) die("connection reset by Kiln");
      if (h.op == kOpRw) received_ += h.len;
      const uint16_t head =
          rx_.add_chain(std::vector<DriverBuffer>{{buf, sizeof(PacketHeader) + kPayload, true}});
      rx_buf_[head] = buf;
      rx_.publish(head);
      reposted = true;
    }
    if (reposted) drv_.kick(kRxQueue);
    if (static_cast<uint32_t>(received_) - told_ >= kGuestBufAlloc / 4) send(kOpCreditUpdate, 0);
  }

 private:
  GuestMemory mem_{{{0, 64 * kMiB}}};
  VirtqueueDriver rx_{mem_, 0x1000, 64, 4 * kMiB, 24 * kMiB};
  VirtqueueDriver tx_{mem_, 0x4000, 64, 28 * kMiB, 24 * kMiB};
  VirtqueueDriver ev_{mem_, 0x7000, 8, 60 * kMiB, kMiB};
  std::shared_ptr<kiln::virtio::VsockDevice> dev_;
  kiln::virtio::MmioTransport transport_;
  MmioDriver drv_;
  std::map<uint16_t, Gpa> rx_buf_;
  std::vector<Gpa> tx_slots_;
  size_t next_slot_ = 0;
  uint32_t tx_cnt_ = 0;
  uint32_t kiln_buf_alloc_ = kBufAlloc;
  uint32_t kiln_fwd_cnt_ = 0;
  uint64_t received_ = 0;
  uint32_t told_ = 0;
  bool peer_response_ = false;
};

// The same bytes through a plain Unix socket pair between two threads.
double baseline(uint64_t bytes) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair");
  UniqueFd a(sv[0]), b(sv[1]);
  const auto start = Clock::now();
  std::thread writer([&] {
    pour(a.get(), bytes);
    ::shutdown(a.get(), SHUT_WR);
  });
  const uint64_t got = drain(b.get());
  writer.join();
  if (got != bytes) die("baseline lost bytes");
  return since(start);
}

void report(const char* what, uint64_t bytes, double kiln_s, double base_s) {
  std::printf("%-16s %8.0f MB/s   unix socket %8.0f MB/s   Kiln/socket %.2f\n", what,
              bytes / kiln_s / 1e6, bytes / base_s / 1e6, base_s / kiln_s);
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t mib = argc > 1 ? std::stoull(argv[1]) : 512;
  const uint64_t bytes = mib * kMiB;
  TempDir dir("kiln-vsock-bench");
  const std::string uds = dir.path() + "/v.sock";
  UniqueFd listener = kiln::testsupport::unix_listen(uds + "_5000");
  std::printf("vsock_bench: %llu MiB per direction, 64 KiB packets\n",
              static_cast<unsigned long long>(mib));

  {  // guest -> host: the peer reads and counts
    auto bench = std::make_unique<Bench>(uds);
    std::atomic<uint64_t> drained{0};
    std::thread peer([&] {
      UniqueFd conn = kiln::testsupport::accept_within(listener.get(), 5000);
      std::vector<char> buf(256 * 1024);
      for (ssize_t n; conn && (n = ::recv(conn.get(), buf.data(), buf.size(), 0)) > 0;)
        drained += static_cast<uint64_t>(n);
    });
    bench->connect();
    const auto start = Clock::now();
    bench->send_bytes(bytes);
    while (drained < bytes) bench->pump(false);  // Kiln flushes what it buffered
    const double kiln_s = since(start);
    bench.reset();  // closes the connection: the peer sees EOF
    peer.join();
    report("guest -> host", bytes, kiln_s, baseline(bytes));
  }
  {  // host -> guest: the peer writes
    auto bench = std::make_unique<Bench>(uds);
    std::thread peer([&] {
      UniqueFd conn = kiln::testsupport::accept_within(listener.get(), 5000);
      if (conn) pour(conn.get(), bytes);
      kiln::testsupport::peer_closed(conn.get(), 5000);
    });
    bench->connect();
    const auto start = Clock::now();
    bench->receive_bytes(bytes);
    const double kiln_s = since(start);
    bench.reset();
    peer.join();
    report("host -> guest", bytes, kiln_s, baseline(bytes));
  }
  return 0;
}
