// One protocol connection over a non-blocking stream fd: frames in (validated, decoded) and
// frames out (queued until the fd takes them). Used by the agent and by the host's client.
#pragma once

#include <vector>

#include "agent/protocol/messages.h"
#include "base/unique_fd.h"

namespace kiln::agent {

class Channel {
 public:
  explicit Channel(UniqueFd fd);  // makes fd non-blocking

  int fd() const { return fd_.get(); }
  // Reads what the fd has (up to 64 KiB) and appends the complete messages to `out`. Returns
  // false at EOF. Throws ProtocolError on a bad frame, kiln::Error-like std::runtime_error on a
  // read error.
  bool read(std::vector<Message>* out);
  // Queues a message; write() sends what the fd takes.
  void send(const Message& m);
  // Writes queued bytes; returns false if the peer is gone (EPIPE, ECONNRESET).
  bool write();
  size_t pending() const { return out_.size() - out_pos_; }
  // Blocks (poll) until everything queued is written or `timeout_ms` passed.
  bool flush(int timeout_ms);

 private:
  UniqueFd fd_;
  FrameReader reader_;
  std::vector<uint8_t> out_;
  size_t out_pos_ = 0;
};

}  // namespace kiln::agent
