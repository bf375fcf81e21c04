#include "devices/virtio/vsock/connection.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>

#include "devices/virtio/chain_io.h"

namespace kiln::virtio::vsock {

namespace {

// writev() until done or the socket is full; returns bytes written or -1 on an error.
ssize_t write_some(int fd, std::vector<iovec>& iov) {
  size_t total = 0;
  size_t first = 0;
  while (first < iov.size()) {
    const int count = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    msghdr msg{};
    msg.msg_iov = &iov[first];
    msg.msg_iovlen = static_cast<size_t>(count);
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? static_cast<ssize_t>(total) : -1;
    total += static_cast<size_t>(n);
    size_t left = static_cast<size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (left == 0) continue;
    iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
    iov[first].iov_len -= left;
    break;  // partial: the socket is full
  }
  return static_cast<ssize_t>(total);
}

}  // namespace

Connection::Connection(UniqueFd fd, uint32_t local_port, uint32_t peer_port, uint64_t guest_cid,
                       State state)
    : fd_(std::move(fd)),
      local_port_(local_port),
      peer_port_(peer_port),
      guest_cid_(guest_cid),
      state_(state) {
  if (state_ == State::kLocalInit) {
    pending_request_ = true;
  } else {
    pending_response_ = true;
  }
}

void Connection::update_peer_credit(const PacketHeader& hdr) {
  peer_buf_alloc_ = hdr.buf_alloc;
  peer_fwd_cnt_ = hdr.fwd_cnt;
  if (peer_credit() > 0) credit_requested_ = false;
}

uint32_t Connection::peer_credit() const {
  const uint32_t in_flight = rx_cnt_ - peer_fwd_cnt_;
  return in_flight >= peer_buf_alloc_ ? 0 : peer_buf_alloc_ - in_flight;
}

void Connection::on_response() {
  state_ = State::kEstablished;
  const std::string ok = "OK " + std::to_string(local_port_) + "\n";
  // Nothing from the guest can be buffered before the connection is established.
  tx_buf_.assign(ok.begin(), ok.end());
  tx_head_ = 0;
  tx_text_ = ok.size();
  flush();
}

Connection::TxResult Connection::send_to_host(const GuestMemory& mem, const DescriptorChain& chain,
                                              uint32_t len, std::vector<iovec>& scratch) {
  if (hup_) return TxResult::kError;  // the host closed: it takes nothing more
  if (len == 0) return TxResult::kOk;
  const size_t buffered = tx_buf_.size() - tx_head_ - tx_text_;
  if (buffered + len > kBufAlloc) return TxResult::kOverflow;
  scratch.clear();
  if (!chain_iovecs(mem, chain, false, sizeof(PacketHeader), len, scratch)) return TxResult::kError;
  size_t written = 0;
  if (tx_empty()) {
    const ssize_t n = write_some(fd_.get(), scratch);
    if (n < 0) return TxResult::kError;
    written = static_cast<size_t>(n);
    fwd_cnt_ += static_cast<uint32_t>(written);
  }
  if (written < len) {
    // Keep the rest for EPOLLOUT.
    if (tx_empty()) {
      tx_buf_.clear();
      tx_head_ = 0;
    }
    scratch.clear();
    chain_iovecs(mem, chain, false, sizeof(PacketHeader) + written, len - written, scratch);
    for (const iovec& v : scratch) {
      const auto* p = static_cast<const uint8_t*>(v.iov_base);
      tx_buf_.insert(tx_buf_.end(), p, p + v.iov_len);
    }
  }
  if (fwd_cnt_ - fwd_cnt_told_ >= kCreditUpdateThreshold) pending_credit_update_ = true;
  return TxResult::kOk;
}

bool Connection::flush() {
  while (!tx_empty()) {
    const ssize_t n = ::send(fd_.get(), tx_buf_.data() + tx_head_, tx_buf_.size() - tx_head_,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) return false;
    size_t done = static_cast<size_t>(n);
    tx_head_ += done;
    const size_t text = std::min(done, tx_text_);
    tx_text_ -= text;
    fwd_cnt_ += static_cast<uint32_t>(done - text);
  }
  if (tx_empty()) {
    tx_buf_.clear();
    tx_head_ = 0;
  } else if (tx_head_ > tx_buf_.size() / 2) {
    tx_buf_.erase(tx_buf_.begin(), tx_buf_.begin() + static_cast<ptrdiff_t>(tx_head_));
    tx_head_ = 0;
  }
  if (fwd_cnt_ - fwd_cnt_told_ >= kCreditUpdateThreshold) pending_credit_update_ = true;
  shut_host_write_if_done();
  return true;
}

void Connection::on_guest_shutdown(uint32_t flags) {
  if (flags & kShutdownRcv) guest_shut_rcv_ = true;
  if (flags & kShutdownSend) guest_shut_send_ = true;
  shut_host_write_if_done();
}

void Connection::shut_host_write_if_done() {
  if (guest_shut_send_ && tx_empty() && !host_write_shut_) {
    ::shutdown(fd_.get(), SHUT_WR);  // the host reader sees EOF
    host_write_shut_ = true;
  }
}

bool Connection::has_rx() const {
  if (pending_request_ || pending_response_ || pending_credit_update_) return true;
  if (state_ != State::kEstablished || !readable_ || host_eof_ || guest_shut_rcv_) return false;
  return peer_credit() > 0 || !credit_requested_;
}

PacketHeader Connection::header(uint16_t op) const {
  return stream_header(op, kHostCid, local_port_, guest_cid_, peer_port_, kBufAlloc, fwd_cnt_);
}

void Connection::write_header(const GuestMemory& mem, const DescriptorChain& chain,
                              PacketHeader hdr) {
  fwd_cnt_told_ = hdr.fwd_cnt;
  pending_credit_update_ = false;  // every packet carries the credit
  chain_write(mem, chain, 0, std::span(reinterpret_cast<const uint8_t*>(&hdr), sizeof(hdr)));
}

Connection::RxResult Connection::produce_rx(const GuestMemory& mem, const DescriptorChain& chain,
                                            uint32_t& written, std::vector<iovec>& scratch) {
  written = sizeof(PacketHeader);
  if (pending_request_) {
    pending_request_ = false;
    write_header(mem, chain, header(kOpRequest));
    return RxResult::kPacket;
  }
  if (pending_response_) {
    pending_response_ = false;
    write_header(mem, chain, header(kOpResponse));
    return RxResult::kPacket;
  }
  if (state_ == State::kEstablished && readable_ && !host_eof_ && !guest_shut_rcv_) {
    const uint32_t credit = peer_credit();
    if (credit == 0) {
      if (!credit_requested_) {
        credit_requested_ = true;
        write_header(mem, chain, header(kOpCreditRequest));
        return RxResult::kPacket;
      }
    } else {
      const uint64_t room = chain.writable_bytes - sizeof(PacketHeader);
      const uint32_t want =
          static_cast<uint32_t>(std::min<uint64_t>({room, credit, uint64_t{kMaxRxPayload}}));
      scratch.clear();
      if (!chain_iovecs(mem, chain, true, sizeof(PacketHeader), want, scratch))
        return RxResult::kError;
      ssize_t n;
      do {
        n = ::readv(fd_.get(), scratch.data(), static_cast<int>(scratch.size()));
      } while (n < 0 && errno == EINTR);
      if (n > 0) {
        PacketHeader h = header(kOpRw);
        h.len = static_cast<uint32_t>(n);
        rx_cnt_ += h.len;
        write_header(mem, chain, h);
        written += h.len;
        return RxResult::kPacket;
      }
      if (n == 0) {
        // The host will send nothing more; if it closed both ways, neither will it receive.
        host_eof_ = true;
        readable_ = false;
        PacketHeader h = header(kOpShutdown);
        h.flags = kShutdownSend | (hup_ ? kShutdownRcv : 0);
        write_header(mem, chain, h);
        return RxResult::kPacket;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) return RxResult::kError;
      readable_ = false;
      if (hup_) return RxResult::kError;  // hung up without EOF: nothing more will come
    }
  }
  if (pending_credit_update_) {
    write_header(mem, chain, header(kOpCreditUpdate));
    return RxResult::kPacket;
  }
  written = 0;
  return RxResult::kNone;
}

uint32_t Connection::wanted_events(bool rx_buffers) const {
  uint32_t events = 0;
  if (state_ == State::kEstablished && rx_buffers && !readable_ && !host_eof_ && !guest_shut_rcv_ &&
      peer_credit() > 0)
    events |= EPOLLIN;
  if (!tx_empty()) events |= EPOLLOUT;
  return events;
}

}  // namespace kiln::virtio::vsock
