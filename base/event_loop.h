// The device event loop: one epoll thread that runs every device-side handler (console input,
// and later ioeventfd queue notifications, timers, the API's commands). vCPU threads never run
// these handlers; they only trap and kick.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "base/event_fd.h"
#include "base/unique_fd.h"

namespace kiln {

class EventLoop {
 public:
  using Handler = std::function<void(uint32_t events)>;

  EventLoop();
  // Watches `fd` for `events` (EPOLLIN, ...); `handler` runs on the loop thread. Call before
  // run() or from a handler. Throws kiln::Error if epoll refuses the fd.
  void add(int fd, uint32_t events, Handler handler);
  // Changes the events watched for `fd` (added before). Thread-safe: one epoll_ctl, the handler
  // stays. Errors are ignored (the fd was removed meanwhile).
  void modify(int fd, uint32_t events);
  // Stops watching `fd`; safe from inside any handler, including the fd's own.
  void remove(int fd);
  // Runs handlers until stop() is called. Handler exceptions are logged and the handler's fd
  // removed; the loop goes on.
  void run();
  // Waits for events once (at most `timeout_ms`, -1: no limit) and runs their handlers (for a
  // loop driven by its owner). Returns how many handlers ran.
  int run_once(int timeout_ms = -1);
  // Thread-safe: makes run() return after the current handler.
  void stop() { stop_.signal(); }

 private:
  UniqueFd epoll_;
  EventFd stop_;
  std::map<int, std::shared_ptr<Handler>> handlers_;
  bool stop_requested_ = false;  // loop thread only
};

}  // namespace kiln
