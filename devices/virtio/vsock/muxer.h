// The host side of Kiln's virtio-vsock, as Firecracker's Unix-socket muxer behaves:
//
// - Host-initiated: a client connects to `uds_path` and writes `CONNECT <port>\n`; Kiln sends
//   the guest a REQUEST from a local port (from 1<<30 up); on RESPONSE the client reads
//   `OK <local port>\n` and the stream is connected. A RST, a bad line or no answer within
//   2 s closes the client.
// - Guest-initiated: a REQUEST to host port P connects to `<uds_path>_P`: RESPONSE on success,
//   RST otherwise.
// - Then RW data both ways under credit flow control, SHUTDOWN and RST (connection.h).
//
// All host fds (listener, clients, connections, a timer and a wake-up eventfd) are in one epoll
// instance whose fd the device hands to the transport. Event-loop thread only.
//
// Host fds are budgeted: at most `max_connections` connections and clients together (one host
// fd each; connection_budget() derives the default from the open-file limit). Over budget, a
// guest REQUEST gets a RST and a host client is accepted and closed at once. If accept() fails
// for want of fds (EMFILE, ENFILE, ENOBUFS, ENOMEM) the listener is not watched until a
// connection or client closes or kAcceptRetry has passed, so the event loop never spins on it.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/event_fd.h"
#include "base/guest_memory.h"
#include "base/log_limiter.h"
#include "base/unique_fd.h"
#include "devices/virtio/queue.h"
#include "devices/virtio/vsock/connection.h"
#include "devices/virtio/vsock/packet.h"
#include "devices/virtio/vsock/unix_socket.h"

namespace kiln::virtio::vsock {

class Muxer {
 public:
  static constexpr auto kConnectTimeout = std::chrono::seconds(2);
  static constexpr auto kCloseTimeout = std::chrono::seconds(2);
  static constexpr auto kAcceptRetry = std::chrono::seconds(1);
  static constexpr size_t kMaxControlPackets = 1024;

  // Connections (and pending host clients) allowed with `fd_limit` open files: a quarter of the
  // limit, at most kMaxConnections (1024); the other three quarters stay for the rest of the VMM
  // (API, drives, TAPs, metrics, KVM). With the common 1024 soft limit: 256; once main() has
  // raised it to a hard limit of 4096 or more: 1024.
  static size_t connection_budget(uint64_t fd_limit);

  // Creates and binds the listener at `uds_path` (throws UsageError, see UnixListener).
  Muxer(uint64_t guest_cid, const std::string& uds_path, size_t max_connections);

  int epoll_fd() const { return epoll_.get(); }
  uint64_t guest_cid() const { return guest_cid_; }
  // Start / stop watching the host side; reset() also drops every connection and client.
  void activate();
  void reset();

  // One packet from the guest's tx queue; its payload is at offset 44 of `chain`'s readable
  // part, `hdr.len` already checked against it.
  void on_guest_packet(const PacketHeader& hdr, const GuestMemory& mem,
                       const DescriptorChain& chain);
  // The guest sent a packet Kiln cannot take (bad type, len past the buffer): RST its sender.
  void reject(const PacketHeader& hdr);
  // Handles whatever the epoll instance reports (without blocking).
  void on_host_events();

  // Whether there is a packet for the guest's rx queue.
  bool has_rx() const;
  // Writes the next packet into `chain` (writable part of at least 45 bytes); returns its
  // length, 0 if there is nothing to send after all.
  uint32_t produce_rx(const GuestMemory& mem, const DescriptorChain& chain);
  // Whether the guest has rx buffers; while it has none, no host socket is read.
  void set_rx_buffers(bool available);
  // Makes the epoll fd ready so rx work queued outside process_host_events gets done.
  void wake() { wake_.signal(); }

  size_t connection_count() const { return connections_.size(); }
  size_t max_connections() const { return max_connections_; }
  // Entries waiting for the rx queue (connections with something to send, queued RSTs): at most
  // one per connection plus kMaxControlPackets.
  size_t rx_backlog() const { return rx_list_.size() + control_.size(); }
  // Whether the listener is being watched (false while paused after EMFILE and when inactive).
  bool listening() const { return active_ && !listener_paused_; }

 private:
  using Key = uint64_t;  // local port << 32 | peer port
  static Key key(uint32_t local, uint32_t peer) { return (uint64_t{local} << 32) | peer; }
  struct Client {  // connected to uds_path, CONNECT line not complete yet
    UniqueFd fd;
    std::string line;
    Clock::time_point deadline;
  };

  void accept_clients();
  // accept() ran out of fds: stop watching the listener until fds are released or a retry.
  void pause_listener();
  void resume_listener();
  bool over_budget() const { return connections_.size() + clients_.size() >= max_connections_; }
  void read_client_line(int fd);
  void connect_to_host(const PacketHeader& hdr);
  void on_connection_event(int fd, uint32_t events);
  void on_timer();
  void arm_timer();
  // Drops `c` and sends the guest a RST for it.
  void kill(Connection& c);
  void remove(Connection& c);
  void push_rst(uint32_t local_port, uint32_t peer_port);
  void schedule_rx(Connection& c);
  void sync_interest(Connection& c);
  void watch(int fd, uint64_t tag, uint32_t events);
  uint32_t allocate_local_port(uint32_t peer_port);

  const uint64_t guest_cid_;
  const size_t max_connections_;
  UnixListener listener_;
  UniqueFd epoll_;
  UniqueFd timer_;
  EventFd wake_;
  bool active_ = false;
  bool rx_buffers_ = true;
  bool listener_paused_ = false;
  Clock::time_point listener_retry_{};  // when a paused listener is watched again
  uint32_t next_local_port_ = kFirstEphemeralPort;

  std::map<Key, std::unique_ptr<Connection>> connections_;
  std::unordered_map<int, Key> by_fd_;
  std::unordered_map<int, Client> clients_;
  std::deque<Key> rx_list_;           // live connections with something for the guest, once each
  std::deque<PacketHeader> control_;  // RSTs for connections already gone
  std::vector<iovec> scratch_;
  LogLimiter log_limit_;
};

}  // namespace kiln::virtio::vsock
