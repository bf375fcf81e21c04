#include "agent/protocol/channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace kiln::agent {

Channel::Channel(UniqueFd fd) : fd_(std::move(fd)) {
  int flags = fcntl(fd_.get(), F_GETFL);
  if (flags < 0 || fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK) < 0)
    throw std::runtime_error(std::string("agent channel: fcntl: ") + std::strerror(errno));
}

bool Channel::read(std::vector<Message>* out) {
  uint8_t buf[64 * 1024];
  ssize_t n = ::read(fd_.get(), buf, sizeof buf);
  if (n == 0) return false;
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return true;
    if (errno == ECONNRESET) return false;
    throw std::runtime_error(std::string("agent channel: read: ") + std::strerror(errno));
  }
  reader_.feed({buf, static_cast<size_t>(n)});
  std::vector<uint8_t> payload;
  while (reader_.next(&payload)) out->push_back(decode(payload));
  return true;
}

void Channel::send(const Message& m) {
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
  }
  auto frame = encode(m);
  out_.insert(out_.end(), frame.begin(), frame.end());
}

bool Channel::write() {
  while (out_pos_ < out_.size()) {
    ssize_t n = ::send(fd_.get(), out_.data() + out_pos_, out_.size() - out_pos_, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK)
      n = ::write(fd_.get(), out_.data() + out_pos_, out_.size() - out_pos_);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return true;
      return false;
    }
    out_pos_ += static_cast<size_t>(n);
  }
  out_.clear();
  out_pos_ = 0;
  return true;
}

bool Channel::flush(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (pending()) {
    if (!write()) return false;
    if (!pending()) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return false;
    pollfd p{fd_.get(), POLLOUT, 0};
    poll(&p, 1, static_cast<int>(left));
  }
  return true;
}

}  // namespace kiln::agent
