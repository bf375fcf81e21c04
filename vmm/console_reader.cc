#include "vmm/console_reader.h"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <array>

namespace kiln {

ConsoleReader::ConsoleReader(EventLoop& loop, int in_fd, ConsoleInput& device, Quit quit)
    : loop_(loop), in_fd_(in_fd), device_(device), quit_(std::move(quit)) {}

void ConsoleReader::start() {
  loop_.add(wake_.fd(), EPOLLIN, [this](uint32_t) { on_wake(); });
  std::lock_guard lock(mutex_);
  update_watch_locked();
}

void ConsoleReader::pause() {
  std::lock_guard lock(mutex_);
  paused_ = true;
}

void ConsoleReader::resume() {
  {
    std::lock_guard lock(mutex_);
    if (!paused_) return;
    paused_ = false;
  }
  wake_.signal();  // the loop hands over what waited
}

size_t ConsoleReader::pending() const {
  std::lock_guard lock(mutex_);
  return pending_.size();
}

void ConsoleReader::on_wake() {
  wake_.consume();
  std::lock_guard lock(mutex_);
  flush_locked();
  update_watch_locked();
}

void ConsoleReader::on_readable() {
  bool quit = false;
  {
    std::lock_guard lock(mutex_);
    const size_t room = kPending - std::min(kPending, pending_.size());
    if (room > 0) {
      std::array<uint8_t, kPending> buf;
      const ssize_t n = ::read(in_fd_, buf.data(), room);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
      if (n <= 0) {
        // End of input (or a read error, e.g. a hung-up tty): the guest runs on without input.
        if (n < 0) spdlog::info("console input ended: {}", errno_message("read"));
        eof_ = true;
      } else {
        // The escape filter may emit one byte more than it got (a held Ctrl-A): pending_ can
        // exceed kPending by that byte, no more.
        const ConsoleEscape::Result r = escape_.feed(std::span(buf.data(), static_cast<size_t>(n)));
        pending_.insert(pending_.end(), r.forward.begin(), r.forward.end());
        quit = r.quit;
      }
    }
    flush_locked();
    update_watch_locked();
  }
  if (quit && quit_) quit_();
}

void ConsoleReader::flush_locked() {
  if (paused_ || pending_.empty()) return;
  // A device that takes less than offered calls back (space_available) once it has room.
  const size_t taken = device_.enqueue_input(pending_);
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(taken));
}

void ConsoleReader::update_watch_locked() {
  const bool want = !eof_ && pending_.size() < kPending;
  if (want == watching_) return;
  if (want)
    loop_.add(in_fd_, EPOLLIN, [this](uint32_t) { on_readable(); });  // throws if not pollable
  else
    loop_.remove(in_fd_);
  watching_ = want;
}

}  // namespace kiln
