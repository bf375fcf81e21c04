// End-to-end virtio-vsock: the vsock test guest drives Kiln's device with its own driver; the
// test plays the host software Firecracker's vsock design expects (a server at <uds>_5000, a
// client that connects to <uds> and writes CONNECT), then moves 64 MiB each way and compares
// both ends' checksums.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>

#include "tests/e2e/api_client.h"
#include "tests/e2e/kiln_process.h"
#include "tests/support/unix_peer.h"

namespace kiln::e2e {
namespace {

using testsupport::TempDir;

constexpr uint64_t kGuestSeed = 0x6b696c6e2d677374ull;  // guest -> host stream
constexpr uint64_t kHostSeed = 0x6b696c6e2d686f73ull;   // host -> guest stream

// The guest's data streams: little-endian bytes of xorshift64* words, and FNV-1a 64.
class Stream {
 public:
  explicit Stream(uint64_t seed) : x_(seed) {}
  void fill(uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      if (left_ == 0) {
        x_ ^= x_ >> 12;
        x_ ^= x_ << 25;
        x_ ^= x_ >> 27;
        word_ = x_ * 0x2545f4914f6cdd1dull;
        left_ = 8;
      }
      p[i] = static_cast<uint8_t>(word_);
      word_ >>= 8;
      --left_;
    }
  }
  void hash(const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) fnv_ = (fnv_ ^ p[i]) * 0x100000001b3ull;
    bytes_ += n;
  }
  std::string fnv_hex() const {
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(fnv_));
    return buf;
  }
  uint64_t bytes() const { return bytes_; }

 private:
  uint64_t x_;
  uint64_t word_ = 0;
  int left_ = 0;
  uint64_t fnv_ = 0xcbf29ce484222325ull;
  uint64_t bytes_ = 0;
};

TEST(VsockGuest, ConnectsBothWaysAndMoves64MiBEachWay) {
  KILN_REQUIRE_KVM();
  constexpr uint64_t kBytes = 64ull << 20;
  TempDir dir("kiln-vsock");
  const std::string uds = dir.path() + "/v.sock";

  // Guest-initiated: the guest connects to port 5000, i.e. to <uds>_5000.
  UniqueFd port5000 = testsupport::unix_listen(uds + "_5000");
  std::string hello;
  bool guest_closed = false;
  std::thread server([&] {
    UniqueFd conn = testsupport::accept_within(port5000.get(), 120000);
    if (!conn) return;
    hello = testsupport::read_line(conn.get());
    testsupport::write_all(conn.get(), "hello from host\n");
    guest_closed = testsupport::peer_closed(conn.get(), 60000);
  });

  KilnProcess kiln({"run", "--kernel", guest_path("vsock"), "--vsock", "cid=7,uds=" + uds});
  const bool listening = kiln.wait_for_output("VSOCK listening port=6000", 120);
  server.join();
  ASSERT_TRUE(listening) << kiln.out() << kiln.err();
  EXPECT_EQ(hello, "hello from guest\n");
  EXPECT_TRUE(guest_closed);
  EXPECT_NE(kiln.out().find("VSOCK cid=7\n"), std::string::npos) << kiln.out();
  EXPECT_NE(kiln.out().find("VSOCK guest-conn port=5000 reply=hello from host\n"),
            std::string::npos)
      << kiln.out();
  EXPECT_NE(kiln.out().find("VSOCK guest-conn closed\n"), std::string::npos) << kiln.out();

  // Host-initiated: CONNECT 6000 on <uds>, answered OK <local port>.
  UniqueFd client = testsupport::unix_connect(uds);
  ASSERT_TRUE(client);
  ASSERT_TRUE(testsupport::write_all(client.get(), "CONNECT 6000\n"));
  ASSERT_EQ(testsupport::read_line(client.get(), 30000), "OK 1073741824\n") << kiln.out();

  const auto start = std::chrono::steady_clock::now();
  Stream sent(kHostSeed), received(kGuestSeed), expected(kGuestSeed);
  bool send_ok = true, data_ok = true;
  std::thread sender([&] {
    std::vector<uint8_t> buf(256 << 10);
    for (uint64_t done = 0; done < kBytes && send_ok; done += buf.size()) {
      sent.fill(buf.data(), buf.size());
      sent.hash(buf.data(), buf.size());
      send_ok = testsupport::write_all(client.get(), buf.data(), buf.size());
    }
  });
  std::vector<uint8_t> buf(256 << 10), want(256 << 10);
  while (received.bytes() < kBytes) {
    if (!testsupport::wait_fd(client.get(), POLLIN, 60000)) break;
    const ssize_t n = ::recv(client.get(), buf.data(), buf.size(), 0);
    if (n <= 0) break;
    expected.fill(want.data(), static_cast<size_t>(n));
    if (std::memcmp(buf.data(), want.data(), static_cast<size_t>(n)) != 0) data_ok = false;
    received.hash(buf.data(), static_cast<size_t>(n));
  }
  sender.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "vsock e2e: 2 x %llu MiB in %.1f s (%.1f MB/s each way)\n",
               static_cast<unsigned long long>(kBytes >> 20), seconds, kBytes / seconds / 1e6);
  EXPECT_TRUE(send_ok);
  EXPECT_TRUE(data_ok);
  EXPECT_EQ(received.bytes(), kBytes);

  // The guest shuts down both ways; Kiln answers RST and closes the client.
  EXPECT_TRUE(testsupport::peer_closed(client.get(), 60000));
  EXPECT_EQ(kiln.wait(120), 0) << kiln.out() << kiln.err();
  const std::string line = "VSOCK bulk rx_bytes=" + std::to_string(kBytes) +
                           " rx_fnv=" + sent.fnv_hex() + " tx_bytes=" + std::to_string(kBytes) +
                           " tx_fnv=" + received.fnv_hex() + "\n";
  EXPECT_NE(kiln.out().find(line), std::string::npos) << line << kiln.out() << kiln.err();
  EXPECT_NE(kiln.out().find("VSOCK done\n"), std::string::npos) << kiln.out();
  EXPECT_NE(::access(uds.c_str(), F_OK), 0) << "uds_path left behind";
}

TEST(VsockBadInput, RefusedBeforeBoot) {
  TempDir dir("kiln-vsock");
  TempFile plain("not a socket");
  const std::string uds = dir.path() + "/v.sock";
  struct Case {
    std::vector<std::string> flags;
    std::string word;
  } cases[] = {
      {{"--vsock", "cid=2,uds=" + uds}, "--vsock cid=2,uds=" + uds + ": cid must be between 3"},
      {{"--vsock", "cid=x,uds=" + uds}, "cid 'x' is not a number"},
      {{"--vsock", "uds=" + uds}, "cid=N is required"},
      {{"--vsock", "cid=3"}, "uds=PATH is required"},
      {{"--vsock", "cid=3,uds=" + uds + ",port=5"}, "unknown option 'port=5'"},
      {{"--vsock", "cid=3,uds=/nonexistent/dir/v.sock"}, "uds directory /nonexistent/dir"},
      {{"--vsock", "cid=3,uds=" + plain.path()}, plain.path() + " already exists and is not"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"run", "--kernel", guest_path("hello")};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    KilnRun r = run_kiln(args);
    EXPECT_EQ(r.exit_code, 2) << describe(r);
    EXPECT_NE(r.err.find(c.word), std::string::npos) << c.word << "\n" << describe(r);
  }
  EXPECT_EQ(std::ifstream(plain.path()).get(), 'n');  // untouched

  // The same key in config files: TOML errors point at the line.
  TempFile toml("[boot-source]\nkernel_image_path = \"" + guest_path("hello") +
                "\"\n\n[vsock]\nguest_cid = 1\nuds_path = \"" + uds + "\"\n");
  KilnRun r = run_kiln({"run", "--config", toml.path()});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find(toml.path() + ":5"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("vsock: guest_cid"), std::string::npos) << describe(r);
  TempFile json("{\"boot-source\": {\"kernel_image_path\": \"" + guest_path("hello") +
                "\"}, \"vsock\": {\"guest_cid\": 3, \"uds_path\": \"" + plain.path() + "\"}}");
  r = run_kiln({"--config-file", json.path()});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find("is not a socket"), std::string::npos) << describe(r);  // reached the device
}

}  // namespace
}  // namespace kiln::e2e
