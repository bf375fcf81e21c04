#include "vmm/console_output.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <string>

namespace kiln {

ConsoleOutput::ConsoleOutput(int fd) : fd_(fd) {
  struct stat st {};
  if (fd_ < 0 || ::fstat(fd_, &st) != 0) return;
  if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) return;  // files, sockets: direct
  const std::string path = "/proc/self/fd/" + std::to_string(fd_);
  nonblocking_.reset(::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!nonblocking_)
    spdlog::info("console output: {}; writes may block when the reader stalls",
                 errno_message("reopening " + path + " non-blocking"));
}

void ConsoleOutput::attach(EventLoop& loop) {
  if (!nonblocking_) return;
  try {
    // No interest yet: EPOLLOUT is armed only while bytes wait. Errors and hang-ups are always
    // reported, and drop the output.
    loop.add(nonblocking_.get(), 0, [this](uint32_t events) { on_event(events); });
    loop_ = &loop;
  } catch (const Error&) {
    nonblocking_.reset();  // cannot be polled (e.g. /dev/null): it never blocks either
  }
}

size_t ConsoleOutput::write(std::span<const uint8_t> bytes) {
  if (fd_ < 0) return bytes.size();
  std::lock_guard lock(mutex_);
  if (gone_) return bytes.size();
  if (!loop_) {
    // Direct: a regular file, /dev/null, or no event loop to flush a buffer.
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        gone_ = true;  // console gone: the guest keeps running, output is dropped
        break;
      }
      done += static_cast<size_t>(n);
    }
    return bytes.size();
  }
  size_t done = 0;
  if (buffer_.empty()) {
    while (done < bytes.size()) {
      const ssize_t n = ::write(nonblocking_.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n <= 0) {
        gone_ = true;
        return bytes.size();
      }
      done += static_cast<size_t>(n);
    }
  }
  const size_t keep = std::min(bytes.size() - done, kCapacity - buffer_.size());
  buffer_.insert(buffer_.end(), bytes.begin() + static_cast<std::ptrdiff_t>(done),
                 bytes.begin() + static_cast<std::ptrdiff_t>(done + keep));
  done += keep;
  if (done < bytes.size()) want_space_ = true;
  if (!buffer_.empty()) set_watch_locked(true);
  return done;
}

void ConsoleOutput::drain(int timeout_ms) {
  std::lock_guard lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!buffer_.empty() && !gone_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{nonblocking_.get(), POLLOUT, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0 || (p.revents & (POLLERR | POLLHUP))) break;
    flush_locked();
  }
  if (!buffer_.empty())
    spdlog::warn("console output: {} bytes the reader did not take were dropped", buffer_.size());
  buffer_.clear();
}

bool ConsoleOutput::ready() const {
  std::lock_guard lock(mutex_);
  return fd_ < 0 || gone_ || !loop_ || buffer_.size() < kCapacity;
}

size_t ConsoleOutput::buffered() const {
  std::lock_guard lock(mutex_);
  return buffer_.size();
}

void ConsoleOutput::on_event(uint32_t events) {
  bool notify = false;
  {
    std::lock_guard lock(mutex_);
    if (events & (EPOLLERR | EPOLLHUP)) {
      gone_ = true;  // the reader went away: drop what waits and all that follows
      buffer_.clear();
      loop_->remove(nonblocking_.get());
      watching_out_ = false;
    } else {
      flush_locked();
    }
    if (want_space_ && (gone_ || buffer_.size() < kCapacity)) {
      want_space_ = false;
      notify = true;
    }
  }
  if (notify && space_) space_();
}

void ConsoleOutput::flush_locked() {
  std::array<uint8_t, 4096> chunk;
  while (!buffer_.empty()) {
    const size_t n = std::min(chunk.size(), buffer_.size());
    std::copy_n(buffer_.begin(), n, chunk.begin());
    const ssize_t w = ::write(nonblocking_.get(), chunk.data(), n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) break;
    if (w <= 0) {
      gone_ = true;
      buffer_.clear();
      break;
    }
    buffer_.erase(buffer_.begin(), buffer_.begin() + w);
  }
  set_watch_locked(!buffer_.empty() && !gone_);
}

void ConsoleOutput::set_watch_locked(bool want) {
  if (want == watching_out_ || !loop_) return;
  loop_->modify(nonblocking_.get(), want ? uint32_t{EPOLLOUT} : uint32_t{0});
  watching_out_ = want;
}

}  // namespace kiln
