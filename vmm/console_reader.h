// Host console input (stdin) for the guest's console device (UART or virtio-console): read on
// the event loop, filtered for the Ctrl-A escape (vmm/console_escape.h), handed to the device.
//
// Nothing is dropped and nothing grows: the reader holds at most kPending bytes the device has
// not taken yet and reads stdin only while it has room for more, so input beyond that waits in
// the pipe or tty. The device calls space_available() (its rx_space callback) once it can take
// more; end of input (a pipe's writer closed) stops the watch, so EOF never spins the loop.
// While paused nothing is handed to the device (stdin is still read into the pending buffer,
// so the escape keeps working); resume() delivers it.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "base/event_fd.h"
#include "base/event_loop.h"
#include "base/pausable.h"
#include "devices/console_input.h"
#include "vmm/console_escape.h"

namespace kiln {

class ConsoleReader : public Pausable {
 public:
  static constexpr size_t kPending = 256;
  using Quit = std::function<void()>;  // the user typed Ctrl-A x

  // `loop`, `device` must outlive the reader; `in_fd` is not owned.
  ConsoleReader(EventLoop& loop, int in_fd, ConsoleInput& device, Quit quit);
  // Starts watching (before loop.run() or on the loop thread). Throws kiln::Error when `in_fd`
  // cannot be polled (/dev/null, a regular file, a closed fd).
  void start();
  // Any thread: the device has room again.
  void space_available() { wake_.signal(); }
  void pause() override;
  void resume() override;
  // Loop thread (tests): bytes read but not yet taken by the device.
  size_t pending() const;

 private:
  void on_readable();
  void on_wake();
  void flush_locked();
  void update_watch_locked();

  EventLoop& loop_;
  const int in_fd_;
  ConsoleInput& device_;
  Quit quit_;
  EventFd wake_;

  mutable std::mutex mutex_;  // held while handing bytes over: pause() waits for it
  std::vector<uint8_t> pending_;
  ConsoleEscape escape_;
  bool paused_ = false;
  bool eof_ = false;
  bool watching_ = false;  // loop thread only
};

}  // namespace kiln
