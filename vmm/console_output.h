// The console's output side: guest console bytes (UART or virtio-console) to the host's stdout
// or the serial output file, without ever blocking the thread that produced them.
//
// A pipe, FIFO or terminal is written through a non-blocking file description of its own
// (reopened from /proc/self/fd, so the O_NONBLOCK does not leak to the shell sharing the
// original one); what it does not take at once waits in a bounded buffer (kCapacity) that the
// event loop flushes when the fd is writable. A full buffer pushes back: write() takes only what
// fits, and the space callback runs once room came back. Regular files and /dev/null are written
// directly (they do not block). A reader that went away (EPIPE, hang-up) drops further output.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "base/event_loop.h"
#include "base/unique_fd.h"

namespace kiln {

class ConsoleOutput {
 public:
  static constexpr size_t kCapacity = 64 * 1024;

  // `fd` is not owned and must stay open; -1: output is dropped.
  explicit ConsoleOutput(int fd);
  // Watches the fd for writability (call before loop.run(), on the loop's owner).
  void attach(EventLoop& loop);
  // Runs on the event-loop thread, no lock held, after a write() that could not take everything
  // once there is room again.
  void set_space_callback(std::function<void()> space) { space_ = std::move(space); }

  // Any thread, never blocks. Returns how many bytes were taken (all when output is dropped).
  size_t write(std::span<const uint8_t> bytes);
  // After the VM stopped (no writer, the loop no longer runs): writes what is still buffered,
  // waiting at most `timeout` for a slow reader, so the guest's last words are not lost.
  void drain(int timeout_ms);
  // Whether write() would take at least one byte now.
  bool ready() const;
  size_t buffered() const;

 private:
  void on_event(uint32_t events);
  // Writes from the buffer until it is empty or the fd is full; mutex_ held.
  void flush_locked();
  void set_watch_locked(bool want);

  int fd_;
  UniqueFd nonblocking_;  // our own description of a pipe/tty; invalid: direct writes to fd_
  EventLoop* loop_ = nullptr;
  std::function<void()> space_;

  mutable std::mutex mutex_;
  std::deque<uint8_t> buffer_;
  bool gone_ = false;          // the reader went away: drop everything
  bool want_space_ = false;    // a write() was cut short
  bool watching_out_ = false;  // EPOLLOUT armed
};

}  // namespace kiln
