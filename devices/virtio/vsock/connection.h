// One vsock stream between a guest port and a host Unix socket, as the device's muxer keeps it:
// the host socket (non-blocking), the connection's state, both sides' credit (virtio 1.2,
// 5.10.6.3) and the bytes from the guest the host socket has not taken yet.
//
// Credit: Kiln advertises kBufAlloc and counts in fwd_cnt the guest's bytes written to the host
// socket, so the guest can never have more than kBufAlloc bytes in Kiln's buffer; the guest
// advertises its buf_alloc/fwd_cnt in every packet and Kiln sends at most buf_alloc - (rx_cnt -
// fwd_cnt) bytes of data. Event-loop thread only (under the transport lock).
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "base/guest_memory.h"
#include "base/unique_fd.h"
#include "devices/virtio/queue.h"
#include "devices/virtio/vsock/packet.h"

namespace kiln::virtio::vsock {

using Clock = std::chrono::steady_clock;

class Connection {
 public:
  enum class State {
    kLocalInit,    // host-initiated: REQUEST sent to the guest, waiting for RESPONSE
    kEstablished,  // data flows
  };
  enum class RxResult { kNone, kPacket, kError };
  enum class TxResult { kOk, kOverflow, kError };

  Connection(UniqueFd fd, uint32_t local_port, uint32_t peer_port, uint64_t guest_cid, State state);

  int fd() const { return fd_.get(); }
  uint32_t local_port() const { return local_port_; }
  uint32_t peer_port() const { return peer_port_; }
  State state() const { return state_; }

  // ---- guest -> Kiln ----
  // Every guest packet carries the guest's credit.
  void update_peer_credit(const PacketHeader& hdr);
  // RESPONSE to our REQUEST: established; the client gets "OK <local_port>\n".
  void on_response();
  // RW payload (bytes [44, 44+len) of the chain's readable part) to the host socket; what the
  // socket does not take now is buffered. kOverflow: the guest ignored Kiln's credit.
  TxResult send_to_host(const GuestMemory& mem, const DescriptorChain& chain, uint32_t len,
                        std::vector<iovec>& scratch);
  // SHUTDOWN flags from the guest.
  void on_guest_shutdown(uint32_t flags);
  void request_credit_update() { pending_credit_update_ = true; }

  // ---- host socket ----
  // EPOLLIN / EPOLLHUP seen on the host socket.
  void on_readable() { readable_ = true; }
  void on_hangup() {
    hup_ = true;
    readable_ = true;  // read until EOF: data may still be queued
  }
  bool hung_up() const { return hup_; }
  // The host closed its end and everything it sent has gone to the guest.
  bool host_done() const { return hup_ && host_eof_; }
  // Writes buffered bytes; false on a socket error.
  bool flush();
  // The guest shut down both directions and everything buffered reached the host: done.
  bool finished() const { return guest_shut_send_ && guest_shut_rcv_ && tx_empty(); }

  // ---- Kiln -> guest ----
  // Whether produce_rx() has something to send now (control packet, or data with credit).
  bool has_rx() const;
  // Writes the next packet (header at 0, payload at 44) into `chain`'s writable part (at least
  // 44 + 1 bytes) and sets `written`. kNone: nothing to send; kError: the host socket failed.
  RxResult produce_rx(const GuestMemory& mem, const DescriptorChain& chain, uint32_t& written,
                      std::vector<iovec>& scratch);

  // epoll interest this connection needs now: EPOLLIN while data could go to the guest and no
  // read is already pending, EPOLLOUT while bytes wait for the host socket.
  uint32_t wanted_events(bool rx_buffers) const;
  // Registered interest (the muxer keeps it in sync with wanted_events()); -1: not in epoll.
  int64_t registered = -1;
  bool in_rx_list = false;
  // Kill the connection (RST) at this time if it is still open; Clock::time_point{}: none.
  Clock::time_point deadline{};

 private:
  uint32_t peer_credit() const;
  bool tx_empty() const { return tx_head_ == tx_buf_.size(); }
  PacketHeader header(uint16_t op) const;
  void write_header(const GuestMemory& mem, const DescriptorChain& chain, PacketHeader hdr);
  void shut_host_write_if_done();

  UniqueFd fd_;
  uint32_t local_port_;
  uint32_t peer_port_;
  uint64_t guest_cid_;
  State state_;

  // Guest's credit as last advertised, and bytes of data Kiln sent it.
  uint32_t peer_buf_alloc_ = 0;
  uint32_t peer_fwd_cnt_ = 0;
  uint32_t rx_cnt_ = 0;
  // Kiln's receive side: guest bytes written to the host socket, and the count last told.
  uint32_t fwd_cnt_ = 0;
  uint32_t fwd_cnt_told_ = 0;

  // Bytes for the host socket not written yet: `tx_text_` bytes of Kiln's own text ("OK ...")
  // first, then guest data.
  std::vector<uint8_t> tx_buf_;
  size_t tx_head_ = 0;
  size_t tx_text_ = 0;

  bool pending_request_ = false;
  bool pending_response_ = false;
  bool pending_credit_update_ = false;
  bool credit_requested_ = false;  // a CREDIT_REQUEST is outstanding
  bool readable_ = false;          // the host socket may have data (or EOF)
  bool hup_ = false;               // the host closed its end
  bool host_eof_ = false;          // read() returned 0: no more data from the host
  bool guest_shut_rcv_ = false;    // the guest takes no more data
  bool guest_shut_send_ = false;   // the guest sends no more data
  bool host_write_shut_ = false;
};

}  // namespace kiln::virtio::vsock
