// virtio-vsock through the virtio-mmio transport with the host-side virtqueue driver playing the
// guest, and real Unix sockets playing the host: connections both ways, data, credit, shutdown,
// malformed packets and chains.
#include "devices/virtio/vsock/vsock_device.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/vsock/packet.h"
#include "tests/support/unix_peer.h"
#include "tests/support/virtqueue_driver.h"

namespace kiln::virtio {
namespace {

using namespace vsock;
using testsupport::DriverBuffer;
using testsupport::MmioDriver;
using testsupport::TempDir;
using testsupport::VirtqueueDriver;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kCid = 3;
constexpr uint32_t kRxBuf = 4096;

struct Packet {
  PacketHeader hdr;
  std::string payload;
};

class VsockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uds = dir.path() + "/v.sock";
    build({kCid, uds});
  }
  // (Re)creates the device with `options` and initialises the driver (fresh queues).
  void build(const VsockOptions& options, std::optional<size_t> max_connections = std::nullopt) {
    drv.reset();
    transport.reset();
    dev.reset();                      // removes the socket at uds
    renew(rx, 0x1000, 64, 0x100000);  // the device starts its rings from index 0 again
    renew(tx, 0x4000, 64, 0x1000000);
    renew(ev, 0x7000, 8, 0x2000000);
    rx_bufs.clear();
    dev = std::make_shared<VsockDevice>(options, max_connections);
    transport = std::make_unique<MmioTransport>(dev, mem, [this] { ++irqs; });
    drv = std::make_unique<MmioDriver>(*transport);
    const VirtqueueDriver* queues[] = {&rx, &tx, &ev};
    features = drv->init(~uint64_t{0}, queues);
  }

  void renew(VirtqueueDriver& q, Gpa base, uint16_t size, Gpa data) {
    std::destroy_at(&q);
    std::construct_at(&q, mem, base, size, data, data == 0x2000000 ? kMiB : 8 * kMiB);
  }

  // What the event loop does while the device's host fd is ready (bounded).
  void pump(int wait_ms = 50) {
    for (int i = 0; i < 1000 && testsupport::wait_fd(dev->host_event_fd(), POLLIN, wait_ms); ++i)
      transport->process_host_events();
  }
  bool host_fd_ready(int ms = 20) { return testsupport::wait_fd(dev->host_event_fd(), POLLIN, ms); }
  void post_rx(int n, uint32_t size = sizeof(PacketHeader) + kRxBuf) {
    for (int i = 0; i < n; ++i) {
      const Gpa buf = rx.alloc(size);
      rx_bufs[rx.submit({{buf, size, true}})] = buf;
    }
    drv->kick(kRxQueue);
  }
  std::optional<Packet> recv() {
    auto used = rx.pop_used();
    if (!used) return std::nullopt;
    Packet p{};
    const Gpa buf = rx_bufs.at(static_cast<uint16_t>(used->id));
    EXPECT_GE(used->len, sizeof(PacketHeader));
    p.hdr = *mem.read_obj<PacketHeader>(buf);
    EXPECT_EQ(used->len, sizeof(PacketHeader) + p.hdr.len);
    p.payload.resize(p.hdr.len);
    mem.read(buf + sizeof(PacketHeader),
             std::span(reinterpret_cast<uint8_t*>(p.payload.data()), p.payload.size()));
    return p;
  }
  // Pumps until a packet arrives.
  std::optional<Packet> expect_packet() {
    for (int i = 0; i < 100; ++i) {
      if (auto p = recv()) return p;
      pump(10);
    }
    return std::nullopt;
  }
  static PacketHeader header(uint16_t op, uint32_t src_port, uint32_t dst_port,
                             uint32_t buf_alloc = 1 << 20, uint32_t fwd_cnt = 0) {
    return stream_header(op, kCid, src_port, kHostCid, dst_port, buf_alloc, fwd_cnt);
  }
  // Puts one packet (header + payload in one readable buffer) on the tx queue and kicks it.
  void send(PacketHeader h, const std::string& payload = "") {
    if (h.op == kOpRw && h.len == 0) h.len = static_cast<uint32_t>(payload.size());
    std::vector<uint8_t> bytes(sizeof(h) + payload.size());
    std::memcpy(bytes.data(), &h, sizeof(h));
    std::memcpy(bytes.data() + sizeof(h), payload.data(), payload.size());
    send_raw(bytes);
  }
  void send_raw(const std::vector<uint8_t>& bytes) {
    tx.submit({{tx.alloc_bytes(bytes), static_cast<uint32_t>(bytes.size()), false}});
    drv->kick(kTxQueue);
    while (tx.pop_used()) {
    }
    if (tx.free_descriptors() == tx.size()) tx.reset_allocator();  // the device took all
  }
  bool needs_reset() { return drv->status() & kStatusDeviceNeedsReset; }

  // Guest port 1234 connects to host port `port` (which listens); returns the host's end.
  UniqueFd guest_connect(UniqueFd& listener, uint32_t port = 52, uint32_t guest_port = 1234) {
    send(header(kOpRequest, guest_port, port));
    auto p = expect_packet();
    EXPECT_TRUE(p);
    if (!p) return UniqueFd();
    EXPECT_EQ(p->hdr.op, kOpResponse);
    return testsupport::accept_within(listener.get(), 1000);
  }

  TempDir dir{"kiln-vsock"};
  std::string uds;
  GuestMemory mem{{{0, 64 * kMiB}}};
  // Same layout as renew().
  VirtqueueDriver rx{mem, 0x1000, 64, 0x100000, 8 * kMiB};
  VirtqueueDriver tx{mem, 0x4000, 64, 0x1000000, 8 * kMiB};
  VirtqueueDriver ev{mem, 0x7000, 8, 0x2000000, kMiB};
  std::map<uint16_t, Gpa> rx_bufs;
  std::shared_ptr<VsockDevice> dev;
  std::unique_ptr<MmioTransport> transport;
  std::unique_ptr<MmioDriver> drv;
  uint64_t features = 0;
  int irqs = 0;
};

TEST_F(VsockTest, IdentifiesItselfAndReportsTheGuestCid) {
  EXPECT_EQ(drv->read32(testsupport::mmio::kDeviceId), 19u);
  EXPECT_TRUE(features & feature(kFVersion1));
  EXPECT_EQ(drv->read32(testsupport::mmio::kConfig), kCid);
  EXPECT_EQ(drv->read32(testsupport::mmio::kConfig + 4), 0u);
  struct stat st {};
  ASSERT_EQ(::stat(uds.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_FALSE(host_fd_ready());  // nothing to do: the event loop sleeps
}

TEST_F(VsockTest, GuestConnectsToHostPortAndExchangesData) {
  UniqueFd listener = testsupport::unix_listen(uds + "_52");
  post_rx(8);
  send(header(kOpRequest, 1234, 52));
  auto resp = expect_packet();
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->hdr.op, kOpResponse);
  EXPECT_EQ(resp->hdr.src_cid, kHostCid);
  EXPECT_EQ(resp->hdr.dst_cid, kCid);
  EXPECT_EQ(resp->hdr.src_port, 52u);
  EXPECT_EQ(resp->hdr.dst_port, 1234u);
  EXPECT_EQ(resp->hdr.buf_alloc, kBufAlloc);
  EXPECT_GT(irqs, 0);
  UniqueFd host = testsupport::accept_within(listener.get(), 1000);
  ASSERT_TRUE(host);

  send(header(kOpRw, 1234, 52), "hello host");
  EXPECT_EQ(testsupport::read_upto(host.get(), 10), "hello host");

  ASSERT_TRUE(testsupport::write_all(host.get(), "hello guest"));
  auto data = expect_packet();
  ASSERT_TRUE(data);
  EXPECT_EQ(data->hdr.op, kOpRw);
  EXPECT_EQ(data->hdr.src_port, 52u);
  EXPECT_EQ(data->payload, "hello guest");

  // Guest shuts down sending: the host reader sees EOF; then RST closes the connection.
  {
    PacketHeader h = header(kOpShutdown, 1234, 52);
    h.flags = kShutdownSend;
    send(h);
  }
  EXPECT_TRUE(testsupport::peer_closed(host.get()));
  send(header(kOpRst, 1234, 52));
  EXPECT_EQ(dev->muxer().connection_count(), 0u);
  pump();
  EXPECT_FALSE(recv());  // a RST is never answered
}

TEST_F(VsockTest, GuestConnectionToAPortNobodyServesIsReset) {
  post_rx(2);
  send(header(kOpRequest, 1234, 99));
  auto p = expect_packet();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->hdr.op, kOpRst);
  EXPECT_EQ(p->hdr.src_port, 99u);
  EXPECT_EQ(p->hdr.dst_port, 1234u);
  EXPECT_EQ(dev->muxer().connection_count(), 0u);
}

TEST_F(VsockTest, HostClientConnectsWithConnectLine) {
  post_rx(8);
  UniqueFd client = testsupport::unix_connect(uds);
  ASSERT_TRUE(client);
  ASSERT_TRUE(testsupport::write_all(client.get(), "CONNECT 80\nearly"));
  auto req = expect_packet();
  ASSERT_TRUE(req);
  EXPECT_EQ(req->hdr.op, kOpRequest);
  EXPECT_EQ(req->hdr.src_port, kFirstEphemeralPort);
  EXPECT_EQ(req->hdr.dst_port, 80u);
  EXPECT_EQ(req->hdr.dst_cid, kCid);

  send(header(kOpResponse, 80, kFirstEphemeralPort));
  EXPECT_EQ(testsupport::read_line(client.get()), "OK 1073741824\n");
  // Bytes written after the CONNECT line are the stream's first data.
  auto early = expect_packet();
  ASSERT_TRUE(early);
  EXPECT_EQ(early->hdr.op, kOpRw);
  EXPECT_EQ(early->payload, "early");
  send(header(kOpRw, 80, kFirstEphemeralPort), "from guest");
  EXPECT_EQ(testsupport::read_upto(client.get(), 10), "from guest");

  // The host closes: the guest gets SHUTDOWN (both), answers RST, the connection is gone.
  client.reset();
  auto shut = expect_packet();
  ASSERT_TRUE(shut);
  EXPECT_EQ(shut->hdr.op, kOpShutdown);
  EXPECT_EQ(shut->hdr.flags, kShutdownRcv | kShutdownSend);
  send(header(kOpRst, 80, kFirstEphemeralPort));
  EXPECT_EQ(dev->muxer().connection_count(), 0u);

  // The next client gets the next local port.
  UniqueFd second = testsupport::unix_connect(uds);
  ASSERT_TRUE(testsupport::write_all(second.get(), "CONNECT 81\n"));
  auto req2 = expect_packet();
  ASSERT_TRUE(req2);
  EXPECT_EQ(req2->hdr.src_port, kFirstEphemeralPort + 1);
}

TEST_F(VsockTest, RefusedOrMalformedConnectRequestsCloseTheClient) {
  post_rx(8);
  UniqueFd client = testsupport::unix_connect(uds);
  ASSERT_TRUE(testsupport::write_all(client.get(), "CONNECT 80\n"));
  auto req = expect_packet();
  ASSERT_TRUE(req);
  send(header(kOpRst, 80, req->hdr.src_port));  // nobody listens on 80 in the guest
  EXPECT_TRUE(testsupport::peer_closed(client.get()));

  for (const char* line : {"HELLO 80\n", "CONNECT\n", "CONNECT 99999999999\n", "CONNECT -1\n"}) {
    UniqueFd bad = testsupport::unix_connect(uds);
    ASSERT_TRUE(testsupport::write_all(bad.get(), line));
    pump();
    EXPECT_TRUE(testsupport::peer_closed(bad.get())) << line;
  }
  EXPECT_EQ(dev->muxer().connection_count(), 0u);
  EXPECT_FALSE(recv());
}

TEST_F(VsockTest, GuestThatNeverAnswersTimesOut) {
  post_rx(8);
  UniqueFd client = testsupport::unix_connect(uds);
  ASSERT_TRUE(testsupport::write_all(client.get(), "CONNECT 80\n"));
  auto req = expect_packet();
  ASSERT_TRUE(req);
  // Kiln gives up after 2 s: RST to the guest, the client is closed.
  for (int i = 0; i < 40 && dev->muxer().connection_count() > 0; ++i) pump(100);
  EXPECT_EQ(dev->muxer().connection_count(), 0u);
  EXPECT_TRUE(testsupport::peer_closed(client.get()));
  auto rst = expect_packet();
  ASSERT_TRUE(rst);
  EXPECT_EQ(rst->hdr.op, kOpRst);
}

TEST_F(VsockTest, MalformedPacketsAreResetNeverFatal) {
  UniqueFd listener = testsupport::unix_listen(uds + "_52");
  post_rx(16);
  UniqueFd host = guest_connect(listener);
  ASSERT_TRUE(host);

  // Shorter than the header: dropped (no addresses to answer), the queue goes on.
  send_raw(std::vector<uint8_t>(20, 0xab));
  pump();
  EXPECT_FALSE(recv());
  // A chain with only a device-writable buffer (no header to read).
  tx.submit({{tx.alloc(64), 64, true}});
  drv->kick(kTxQueue);
  pump();
  EXPECT_FALSE(recv());

  // len larger than the buffer: RST for that connection.
  PacketHeader h = header(kOpRw, 1234, 52);
  h.len = 1000;
  send(h, "short");
  auto rst = expect_packet();
  ASSERT_TRUE(rst);
  EXPECT_EQ(rst->hdr.op, kOpRst);
  EXPECT_EQ(rst->hdr.dst_port, 1234u);
  EXPECT_TRUE(testsupport::peer_closed(host.get()));
  EXPECT_EQ(dev->muxer().connection_count(), 0u);

  // Wrong type (SEQPACKET) and a payload on a control op: RST.
  PacketHeader seq = header(kOpRequest, 1235, 52);
  seq.type = 2;
  send(seq);
  auto rst2 = expect_packet();
  ASSERT_TRUE(rst2);
  EXPECT_EQ(rst2->hdr.op, kOpRst);
  EXPECT_EQ(rst2->hdr.dst_port, 1235u);

  // Unknown op on an open connection: RST, the host end is closed.
  UniqueFd host2 = guest_connect(listener, 52, 2000);
  ASSERT_TRUE(host2);
  send(header(99, 2000, 52));
  auto rst3 = expect_packet();
  ASSERT_TRUE(rst3);
  EXPECT_EQ(rst3->hdr.op, kOpRst);
  EXPECT_TRUE(testsupport::peer_closed(host2.get()));

  // Data, credit or shutdown for a connection that does not exist: RST.
  for (uint16_t op : {kOpRw, kOpCreditUpdate, kOpShutdown, kOpResponse}) {
    send(header(op, 3000, 52), op == kOpRw ? "x" : "");
    auto r = expect_packet();
    ASSERT_TRUE(r) << op;
    EXPECT_EQ(r->hdr.op, kOpRst) << op;
    EXPECT_EQ(r->hdr.dst_port, 3000u);
  }
  // From a CID that is not the guest's: dropped.
  PacketHeader spoof = header(kOpRequest, 4000, 52);
  spoof.src_cid = 7;
  send(spoof);
  pump();
  EXPECT_FALSE(recv());

  EXPECT_FALSE(needs_reset());
  UniqueFd host3 = guest_connect(listener, 52, 5000);  // still works
  EXPECT_TRUE(host3);
}

TEST_F(VsockTest, RxChainTooSmallForAHeaderIsReturnedEmpty) {
  const Gpa tiny = rx.alloc(16);
  rx.submit({{tiny, 16, true}});
  drv->kick(kRxQueue);
  post_rx(1);
  send(header(kOpRequest, 1234, 99));
  pump();
  auto first = rx.pop_used();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->len, 0u);
  auto rst = recv();
  ASSERT_TRUE(rst);
  EXPECT_EQ(rst->hdr.op, kOpRst);
  EXPECT_FALSE(needs_reset());
}

TEST_F(VsockTest, HostDataRespectsTheGuestsCredit) {
  UniqueFd listener = testsupport::unix_listen(uds + "_52");
  post_rx(32);
  send(header(kOpRequest, 1234, 52, /*buf_alloc=*/10000));
  auto resp = expect_packet();
  ASSERT_TRUE(resp);
  UniqueFd host = testsupport::accept_within(listener.get(), 1000);
  ASSERT_TRUE(host);
  const std::string data(30000, 'z');
  ASSERT_TRUE(testsupport::write_all(host.get(), data));

  std::string got;
  bool credit_request = false;
  for (int i = 0; i < 100; ++i) {
    pump(10);
    while (auto p = recv()) {
      if (p->hdr.op == kOpRw) got += p->payload;
      if (p->hdr.op == kOpCreditRequest) credit_request = true;
    }
  }
  EXPECT_EQ(got.size(), 10000u);  // exactly the guest's buf_alloc
  EXPECT_TRUE(credit_request);    // and then Kiln asks for more

  // Nothing to do while the guest has no credit: the host fd is not left ready.
  EXPECT_FALSE(host_fd_ready());
  send(header(kOpCreditUpdate, 1234, 52, 10000, 10000));
  for (int i = 0; i < 50 && got.size() < 20000; ++i) {
    pump(10);
    while (auto p = recv())
      if (p->hdr.op == kOpRw) got += p->payload;
  }
  EXPECT_EQ(got.size(), 20000u);
}

TEST_F(VsockTest, NoRxBuffersMeansNoReadsAndNoBusyLoop) {
  UniqueFd listener = testsupport::unix_listen(uds + "_52");
  post_rx(1);  // just enough for the RESPONSE
  UniqueFd host = guest_connect(listener);
  ASSERT_TRUE(host);
  ASSERT_TRUE(testsupport::write_all(host.get(), "waiting"));
  pump();
  EXPECT_FALSE(host_fd_ready());  // data waits in the socket, the event loop sleeps
  post_rx(2);
  auto p = expect_packet();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->payload, "waiting");
}

TEST_F(VsockTest, KilnAdvertisesCreditAndAnswersCreditRequests) {
  UniqueFd listener = testsupport::unix_listen(uds + "_52");
  post_rx(16);
  UniqueFd host = guest_connect(listener);
  ASSERT_TRUE(host);
  send(header(kOpCreditRequest, 1234, 52));
  auto p = expect_packet();
  ASSERT_TRUE(p);
  EXPECT_EQ(p->hdr.op, kOpCreditUpdate);
  EXPECT_EQ(p->hdr.buf_alloc, kBufAlloc);
  EXPECT_EQ(p->hdr.fwd_cnt, 0u);

  // After 64 KiB have reached the host socket Kiln tells the guest unasked.
  const std::string chunk(4096, 'd');
  for (int i = 0; i < 16; ++i) send(header(kOpRw, 1234, 52), chunk);
  auto update = expect_packet();
  ASSERT_TRUE(update);
  EXPECT_EQ(update->hdr.op, kOpCreditUpdate);
  EXPECT_EQ(update->hdr.fwd_cnt, 65536u);
  EXPECT_EQ(testsupport::read_upto(host.get(), 65536).size(), 65536u);
}

TEST_F(VsockTest, GuestIgnoringKilnsCreditIsReset) {
  UniqueFd listener = testsupport::unix_listen(uds + "_52");
  post_rx(16);
  UniqueFd host = guest_connect(listener);
  ASSERT_TRUE(host);
  int small = 4096;
  ::setsockopt(host.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  const std::string chunk(32768, 'o');
  // The host does not read: Kiln buffers up to its buf_alloc, then the guest is over its credit.
  bool reset = false;
  for (int i = 0; i < 200 && !reset; ++i) {
    send(header(kOpRw, 1234, 52), chunk);
    pump(1);
    while (auto p = recv()) reset |= p->hdr.op == kOpRst;
  }
  EXPECT_TRUE(reset);
  EXPECT_EQ(dev->muxer().connection_count(), 0u);
  EXPECT_FALSE(needs_reset());
}

TEST_F(VsockTest, DeviceResetDropsEveryConnection) {
  UniqueFd listener = testsupport::unix_listen(uds + "_52");
  post_rx(4);
  UniqueFd host = guest_connect(listener);
  ASSERT_TRUE(host);
  UniqueFd pending = testsupport::unix_connect(uds);
  pump();
  drv->set_status(0);
  EXPECT_EQ(dev->muxer().connection_count(), 0u);
  EXPECT_TRUE(testsupport::peer_closed(host.get()));
  EXPECT_TRUE(testsupport::peer_closed(pending.get()));
  // A client now waits in the listen backlog; nothing is watched until the driver is back.
  UniqueFd later = testsupport::unix_connect(uds);
  EXPECT_FALSE(host_fd_ready());
}

// ---- Host fd budget ----

TEST_F(VsockTest, OverBudgetConnectionsAreRefused) {
  build({kCid, uds}, 2);
  UniqueFd listener = testsupport::unix_listen(uds + "_52");
  post_rx(16);
  UniqueFd a = guest_connect(listener, 52, 1000);
  UniqueFd b = guest_connect(listener, 52, 1001);
  ASSERT_TRUE(a && b);
  // A third guest REQUEST: RST, no host connection.
  send(header(kOpRequest, 1002, 52));
  auto rst = expect_packet();
  ASSERT_TRUE(rst);
  EXPECT_EQ(rst->hdr.op, kOpRst);
  EXPECT_EQ(rst->hdr.dst_port, 1002u);
  EXPECT_FALSE(testsupport::accept_within(listener.get(), 100));
  EXPECT_EQ(dev->muxer().connection_count(), 2u);
  // A host client over budget is accepted and closed at once.
  UniqueFd client = testsupport::unix_connect(uds);
  ASSERT_TRUE(client);
  pump();
  EXPECT_TRUE(testsupport::peer_closed(client.get()));
  EXPECT_FALSE(recv());  // no REQUEST reached the guest
  // A closed connection frees its place.
  send(header(kOpRst, 1000, 52));
  EXPECT_EQ(dev->muxer().connection_count(), 1u);
  EXPECT_TRUE(guest_connect(listener, 52, 1003));
}

TEST(VsockBudget, IsAQuarterOfTheFdLimitAtMost1024) {
  EXPECT_EQ(Muxer::connection_budget(1024), 256u);
  EXPECT_EQ(Muxer::connection_budget(4096), 1024u);
  EXPECT_EQ(Muxer::connection_budget(1u << 20), 1024u);
  EXPECT_EQ(Muxer::connection_budget(100), 25u);
}

// Runs `body` in a forked child whose soft RLIMIT_NOFILE is `limit`; the child's exit status 0
// means `body` returned true (it prints why not otherwise).
#define EXPECT_IN_CHILD_WITH_FD_LIMIT(limit, body)         \
  EXPECT_EXIT(                                             \
      {                                                    \
        rlimit rl{};                                       \
        ::getrlimit(RLIMIT_NOFILE, &rl);                   \
        rl.rlim_cur = (limit);                             \
        if (::setrlimit(RLIMIT_NOFILE, &rl) < 0) _exit(3); \
        _exit((body) ? 0 : 1);                             \
      },                                                   \
      ::testing::ExitedWithCode(0), "")

bool check(bool ok, const char* what) {
  if (!ok) std::fprintf(stderr, "failed: %s\n", what);
  return ok;
}

TEST_F(VsockTest, DefaultBudgetLeavesFdsForTheVmmUnderALowLimit) {
  auto body = [this] {
    build({kCid, uds});  // budget from the (lowered) limit: 256 / 4
    const size_t budget = dev->muxer().max_connections();
    // A host listener with room for every connection in its backlog (nobody accepts).
    UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_un addr = testsupport::unix_addr(uds + "_52");
    if (::bind(listener.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0 ||
        ::listen(listener.get(), 1024) < 0)
      return check(false, "listen");
    for (uint32_t port = 1000; port < 1400; ++port) send(header(kOpRequest, port, 52));
    UniqueFd probe(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    return check(probe.valid(), "the VMM can still open files") &&
           check(budget == 64, "budget is a quarter of 256") &&
           check(dev->muxer().connection_count() == budget, "connections up to the budget");
  };
  EXPECT_IN_CHILD_WITH_FD_LIMIT(256, body());
}

TEST_F(VsockTest, ListenerOutOfFdsDoesNotSpinTheEventLoop) {
  auto body = [this] {
    post_rx(8);
    UniqueFd client = testsupport::unix_connect(uds);  // waits in the backlog
    if (!client) return check(false, "connect");
    std::vector<UniqueFd> filler;  // every fd the limit allows
    for (;;) {
      UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
      if (!fd) break;
      filler.push_back(std::move(fd));
    }
    if (!check(errno == EMFILE && host_fd_ready(), "fds exhausted, client pending")) return false;
    // The event loop's view: run the handler whenever the device's fd is ready, for 300 ms.
    int runs = 0;
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    while (std::chrono::steady_clock::now() < end) {
      if (testsupport::wait_fd(dev->host_event_fd(), POLLIN, 10)) {
        transport->process_host_events();
        ++runs;
      }
    }
    std::fprintf(stderr, "handler ran %d times\n", runs);
    if (!check(runs <= 2, "the handler ran once, not in a loop")) return false;
    if (!check(!dev->muxer().listening(), "listener paused")) return false;
    // Fds free again: the client is accepted (retry after Muxer::kAcceptRetry) and served.
    filler.clear();
    if (!testsupport::write_all(client.get(), "CONNECT 80\n")) return check(false, "write");
    std::optional<Packet> req;
    for (int i = 0; i < 40 && !req; ++i) {
      pump(100);
      req = recv();
    }
    return check(req && req->hdr.op == kOpRequest && req->hdr.dst_port == 80,
                 "the waiting client reached the guest") &&
           check(dev->muxer().listening(), "listener watched again");
  };
  EXPECT_IN_CHILD_WITH_FD_LIMIT(128, body());
}

// ---- Bounded queues ----

TEST_F(VsockTest, RequestRstRoundsWithoutRxBuffersStayBounded) {
  UniqueFd listener = testsupport::unix_listen(uds + "_52");
  // No rx buffers: every RESPONSE stays queued until the guest RSTs the connection.
  size_t most = 0;
  for (int round = 0; round < 100000; ++round) {
    send(header(kOpRequest, 1234, 52));
    UniqueFd host(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    ASSERT_TRUE(host) << "round " << round;
    send(header(kOpRst, 1234, 52));
    most = std::max(most, dev->muxer().rx_backlog());
  }
  EXPECT_EQ(dev->muxer().connection_count(), 0u);
  EXPECT_EQ(dev->muxer().rx_backlog(), 0u);
  EXPECT_LE(most, 1u);
  // Not-listening ports: the RSTs queue up to kMaxControlPackets, no further.
  for (uint32_t port = 0; port < 3 * Muxer::kMaxControlPackets; ++port)
    send(header(kOpRequest, 5000 + port, 99));
  EXPECT_EQ(dev->muxer().rx_backlog(), Muxer::kMaxControlPackets);
}

TEST(VsockUdsPath, ExistingFileIsRefusedAndSocketRemovedAtExit) {
  TempDir dir("kiln-vsock");
  const std::string file = dir.path() + "/file";
  { UniqueFd f(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600)); }
  try {
    VsockDevice dev(VsockOptions{3, file});
    FAIL() << "a regular file was accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("not a socket"), std::string::npos) << e.what();
  }
  const std::string uds = dir.path() + "/v.sock";
  {
    VsockDevice dev(VsockOptions{3, uds});
    EXPECT_EQ(::access(uds.c_str(), F_OK), 0);
    EXPECT_THROW(VsockDevice(VsockOptions{3, uds}), UsageError);  // in use
  }
  EXPECT_NE(::access(uds.c_str(), F_OK), 0);  // removed with the device
  {
    UniqueFd stale = testsupport::unix_listen(uds);
  }  // a socket file nobody listens on any more is replaced
  VsockDevice again(VsockOptions{3, uds});
}

}  // namespace
}  // namespace kiln::virtio
