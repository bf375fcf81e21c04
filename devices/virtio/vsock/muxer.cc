#include "devices/virtio/vsock/muxer.h"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "devices/virtio/chain_io.h"

namespace kiln::virtio::vsock {

namespace {

enum Tag : uint64_t { kTagListener = 1, kTagTimer, kTagWake, kTagClient, kTagConnection };
constexpr size_t kMaxConnectLine = 32;  // "CONNECT 4294967295\n" fits
constexpr int kEventBatch = 64;

uint64_t token(Tag tag, int fd) {
  return (uint64_t{tag} << 32) | static_cast<uint32_t>(fd);
}

// "CONNECT <port>" (the '\n' already stripped); false if it is anything else.
bool parse_connect(const std::string& line, uint32_t& port) {
  static const std::string kPrefix = "CONNECT ";
  if (line.rfind(kPrefix, 0) != 0) return false;
  const std::string digits = line.substr(kPrefix.size());
  if (digits.empty() || digits.size() > 10 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  const uint64_t value = std::stoull(digits);
  if (value > UINT32_MAX) return false;
  port = static_cast<uint32_t>(value);
  return true;
}

}  // namespace

size_t Muxer::connection_budget(uint64_t fd_limit) {
  return static_cast<size_t>(std::min<uint64_t>(kMaxConnections, fd_limit / 4));
}

Muxer::Muxer(uint64_t guest_cid, const std::string& uds_path, size_t max_connections)
    : guest_cid_(guest_cid),
      max_connections_(max_connections),
      listener_(uds_path),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      timer_(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)) {
  if (!epoll_) throw_errno("epoll_create1");
  if (!timer_) throw_errno("timerfd_create");
}

void Muxer::watch(int fd, uint64_t tag, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token(static_cast<Tag>(tag), fd);
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) throw_errno("vsock: epoll_ctl(ADD)");
}

void Muxer::activate() {
  if (active_) return;
  watch(listener_.fd(), kTagListener, EPOLLIN);
  watch(timer_.get(), kTagTimer, EPOLLIN);
  watch(wake_.fd(), kTagWake, EPOLLIN);
  active_ = true;
  rx_buffers_ = true;
  listener_paused_ = false;
}

void Muxer::reset() {
  for (int fd : {listener_.fd(), timer_.get(), wake_.fd()})
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  connections_.clear();  // closing a socket takes it out of the epoll set
  by_fd_.clear();
  clients_.clear();
  rx_list_.clear();
  control_.clear();
  wake_.consume();
  const itimerspec off{};
  ::timerfd_settime(timer_.get(), 0, &off, nullptr);
  active_ = false;
  listener_paused_ = false;
}

// ---- host side ----

void Muxer::on_host_events() {
  wake_.consume();
  epoll_event events[kEventBatch];
  const int n = ::epoll_wait(epoll_.get(), events, kEventBatch, 0);
  for (int i = 0; i < n; ++i) {
    const auto tag = static_cast<Tag>(events[i].data.u64 >> 32);
    const int fd = static_cast<int>(events[i].data.u64 & 0xffffffffu);
    switch (tag) {
      case kTagListener:
        accept_clients();
        break;
      case kTagTimer: {
        uint64_t expirations;
        [[maybe_unused]] ssize_t r = ::read(timer_.get(), &expirations, sizeof(expirations));
        on_timer();
        break;
      }
      case kTagWake:
        break;
      case kTagClient:
        read_client_line(fd);
        break;
      case kTagConnection:
        on_connection_event(fd, events[i].events);
        break;
    }
  }
}

void Muxer::accept_clients() {
  for (;;) {
    UniqueFd fd = listener_.accept();
    if (!fd) {
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) return;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // The client stays in the backlog, the listener stays readable: stop watching it.
        if (log_limit_.allow())
          spdlog::warn("vsock {}: accept: {}; clients wait until a connection closes",
                       listener_.path(), std::strerror(err));
        pause_listener();
        return;
      }
      if (log_limit_.allow())
        spdlog::warn("vsock {}: accept: {}", listener_.path(), std::strerror(err));
      return;  // ECONNABORTED and the like: that client is gone, the next readiness retries
    }
    if (over_budget()) {
      if (log_limit_.allow())
        spdlog::warn("vsock {}: {} connections open, refusing another", listener_.path(),
                     max_connections_);
      continue;  // closed
    }
    const int raw = fd.get();
    watch(raw, kTagClient, EPOLLIN);
    clients_[raw] = Client{std::move(fd), "", Clock::now() + kConnectTimeout};
    arm_timer();
  }
}

void Muxer::pause_listener() {
  if (listener_paused_) return;
  epoll_event ev{};  // no events: registered, but never reported
  ev.data.u64 = token(kTagListener, listener_.fd());
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, listener_.fd(), &ev);
  listener_paused_ = true;
  listener_retry_ = Clock::now() + kAcceptRetry;
  arm_timer();
}

void Muxer::resume_listener() {
  if (!listener_paused_ || !active_) return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = token(kTagListener, listener_.fd());
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, listener_.fd(), &ev);
  listener_paused_ = false;
}

void Muxer::read_client_line(int fd) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  Client& client = it->second;
  // One byte at a time: whatever follows the line is the stream's first data.
  for (;;) {
    char ch;
    const ssize_t n = ::recv(fd, &ch, 1, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      clients_.erase(it);
      resume_listener();
      return;
    }
    if (ch == '\n') break;
    client.line += ch;
    if (client.line.size() > kMaxConnectLine) {
      clients_.erase(it);
      resume_listener();
      return;
    }
  }
  uint32_t port = 0;
  if (!parse_connect(client.line, port)) {
    spdlog::info("vsock {}: bad request line from a host client, closing it", listener_.path());
    clients_.erase(it);
    resume_listener();
    return;
  }
  UniqueFd sock = std::move(client.fd);
  clients_.erase(it);
  epoll_event ev{};
  ev.data.u64 = token(kTagConnection, fd);
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);  // only HUP/ERR until the guest answers
  const uint32_t local = allocate_local_port(port);
  auto conn = std::make_unique<Connection>(std::move(sock), local, port, guest_cid_,
                                           Connection::State::kLocalInit);
  conn->registered = 0;
  conn->deadline = Clock::now() + kConnectTimeout;
  Connection& c = *conn;
  by_fd_[fd] = key(local, port);
  connections_[key(local, port)] = std::move(conn);
  schedule_rx(c);
  arm_timer();
}

uint32_t Muxer::allocate_local_port(uint32_t peer_port) {
  for (;;) {
    const uint32_t port = next_local_port_;
    next_local_port_ = port == UINT32_MAX ? kFirstEphemeralPort : port + 1;
    if (!connections_.count(key(port, peer_port))) return port;
  }
}

void Muxer::on_connection_event(int fd, uint32_t events) {
  auto k = by_fd_.find(fd);
  if (k == by_fd_.end()) return;
  Connection& c = *connections_.at(k->second);
  if (events & EPOLLERR) return kill(c);
  if (events & EPOLLHUP) {
    // Both directions are closed: nothing more can be written; read what is left, to EOF.
    if (c.state() == Connection::State::kLocalInit || !c.flush()) return kill(c);
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    c.registered = -1;
    c.on_hangup();
  }
  if (events & EPOLLIN) c.on_readable();
  if (events & EPOLLOUT) {
    if (!c.flush()) return kill(c);
    if (c.finished()) return kill(c);
  }
  schedule_rx(c);
  sync_interest(c);
}

void Muxer::on_timer() {
  const Clock::time_point now = Clock::now();
  if (std::erase_if(clients_, [&](const auto& entry) { return entry.second.deadline <= now; }))
    resume_listener();
  if (listener_paused_ && listener_retry_ <= now) resume_listener();
  std::vector<Connection*> expired;
  for (auto& [k, c] : connections_)
    if (c->deadline != Clock::time_point{} && c->deadline <= now) expired.push_back(c.get());
  for (Connection* c : expired) kill(*c);
  arm_timer();
}

void Muxer::arm_timer() {
  Clock::time_point first = Clock::time_point::max();
  for (const auto& [fd, client] : clients_) first = std::min(first, client.deadline);
  if (listener_paused_) first = std::min(first, listener_retry_);
  for (const auto& [k, c] : connections_)
    if (c->deadline != Clock::time_point{}) first = std::min(first, c->deadline);
  itimerspec spec{};
  if (first != Clock::time_point::max()) {
    const auto wait = std::max<Clock::duration>(first - Clock::now(), std::chrono::milliseconds(1));
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
    spec.it_value.tv_sec = static_cast<time_t>(ns / 1000000000);
    spec.it_value.tv_nsec = static_cast<long>(ns % 1000000000);
  }
  ::timerfd_settime(timer_.get(), 0, &spec, nullptr);
}

// ---- guest side ----

void Muxer::on_guest_packet(const PacketHeader& hdr, const GuestMemory& mem,
                            const DescriptorChain& chain) {
  auto it = connections_.find(key(hdr.dst_port, hdr.src_port));
  if (it == connections_.end()) {
    if (hdr.op == kOpRequest) return connect_to_host(hdr);
    if (hdr.op != kOpRst) push_rst(hdr.dst_port, hdr.src_port);
    return;
  }
  Connection& c = *it->second;
  c.update_peer_credit(hdr);
  switch (hdr.op) {
    case kOpResponse:
      if (c.state() != Connection::State::kLocalInit) return kill(c);
      c.deadline = {};
      c.on_response();
      break;
    case kOpRw:
      if (c.state() != Connection::State::kEstablished) return kill(c);
      switch (c.send_to_host(mem, chain, hdr.len, scratch_)) {
        case Connection::TxResult::kOk:
          break;
        case Connection::TxResult::kOverflow:
          if (log_limit_.allow())
            spdlog::warn("vsock: guest port {} sent past its credit, resetting the connection",
                         hdr.src_port);
          return kill(c);
        case Connection::TxResult::kError:
          return kill(c);
      }
      break;
    case kOpShutdown:
      c.on_guest_shutdown(hdr.flags);
      if (c.finished()) return kill(c);  // RST completes the close, as the spec asks
      if ((hdr.flags & (kShutdownRcv | kShutdownSend)) == (kShutdownRcv | kShutdownSend)) {
        c.deadline = Clock::now() + kCloseTimeout;  // flush what is buffered, then RST
        arm_timer();
      }
      break;
    case kOpRst:
      return remove(c);
    case kOpCreditUpdate:
      break;
    case kOpCreditRequest:
      c.request_credit_update();
      break;
    default:  // REQUEST on an open connection, unknown ops
      return kill(c);
  }
  schedule_rx(c);
  sync_interest(c);
}

void Muxer::reject(const PacketHeader& hdr) {
  if (hdr.op == kOpRst) return;  // never answer a RST
  auto it = connections_.find(key(hdr.dst_port, hdr.src_port));
  if (it != connections_.end()) return kill(*it->second);
  push_rst(hdr.dst_port, hdr.src_port);
}

void Muxer::connect_to_host(const PacketHeader& hdr) {
  if (over_budget()) {
    if (log_limit_.allow())
      spdlog::warn("vsock: {} connections open, guest connection to port {} reset",
                   max_connections_, hdr.dst_port);
    push_rst(hdr.dst_port, hdr.src_port);
    return;
  }
  const std::string path = listener_.path() + "_" + std::to_string(hdr.dst_port);
  UniqueFd fd = connect_unix(path);
  if (!fd) {
    spdlog::debug("vsock: guest connection to port {}: {}: {}", hdr.dst_port, path,
                  std::strerror(errno));
    push_rst(hdr.dst_port, hdr.src_port);
    return;
  }
  const int raw = fd.get();
  watch(raw, kTagConnection, 0);
  auto conn = std::make_unique<Connection>(std::move(fd), hdr.dst_port, hdr.src_port, guest_cid_,
                                           Connection::State::kEstablished);
  conn->registered = 0;
  conn->update_peer_credit(hdr);
  Connection& c = *conn;
  by_fd_[raw] = key(hdr.dst_port, hdr.src_port);
  connections_[key(hdr.dst_port, hdr.src_port)] = std::move(conn);
  schedule_rx(c);
  sync_interest(c);
}

void Muxer::kill(Connection& c) {
  push_rst(c.local_port(), c.peer_port());
  remove(c);
}

void Muxer::remove(Connection& c) {
  const Key k = key(c.local_port(), c.peer_port());
  if (c.in_rx_list) std::erase(rx_list_, k);  // at most one entry per live connection
  by_fd_.erase(c.fd());
  connections_.erase(k);  // closes the host socket
  resume_listener();      // a host fd is free again
}

void Muxer::push_rst(uint32_t local_port, uint32_t peer_port) {
  if (control_.size() >= kMaxControlPackets) {
    if (log_limit_.allow()) spdlog::warn("vsock: guest is not taking packets, RST dropped");
    return;
  }
  control_.push_back(
      stream_header(kOpRst, kHostCid, local_port, guest_cid_, peer_port, kBufAlloc, 0));
}

void Muxer::schedule_rx(Connection& c) {
  if (c.in_rx_list || !c.has_rx()) return;
  c.in_rx_list = true;
  rx_list_.push_back(key(c.local_port(), c.peer_port()));
}

void Muxer::sync_interest(Connection& c) {
  if (c.registered < 0) return;
  const uint32_t want = c.wanted_events(rx_buffers_);
  if (static_cast<int64_t>(want) == c.registered) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.u64 = token(kTagConnection, c.fd());
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd(), &ev) == 0) c.registered = want;
}

void Muxer::set_rx_buffers(bool available) {
  if (available == rx_buffers_) return;
  rx_buffers_ = available;
  for (auto& [k, c] : connections_) sync_interest(*c);
}

bool Muxer::has_rx() const {
  return !control_.empty() || !rx_list_.empty();
}

uint32_t Muxer::produce_rx(const GuestMemory& mem, const DescriptorChain& chain) {
  for (;;) {
    if (!control_.empty()) {
      const PacketHeader h = control_.front();
      control_.pop_front();
      chain_write(mem, chain, 0, std::span(reinterpret_cast<const uint8_t*>(&h), sizeof(h)));
      return sizeof(h);
    }
    if (rx_list_.empty()) return 0;
    const Key k = rx_list_.front();
    rx_list_.pop_front();
    auto it = connections_.find(k);
    if (it == connections_.end() || !it->second->in_rx_list) continue;
    Connection& c = *it->second;
    c.in_rx_list = false;
    uint32_t written = 0;
    const Connection::RxResult r = c.produce_rx(mem, chain, written, scratch_);
    if (r == Connection::RxResult::kError) {
      kill(c);
      continue;
    }
    if (c.host_done() && c.deadline == Clock::time_point{}) {
      c.deadline = Clock::now() + kCloseTimeout;  // the guest should RST; if not, Kiln does
      arm_timer();
    }
    schedule_rx(c);
    sync_interest(c);
    if (r == Connection::RxResult::kPacket) return written;
  }
}

}  // namespace kiln::virtio::vsock
