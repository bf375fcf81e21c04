#include "base/event_loop.h"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>

#include <array>

namespace kiln {

EventLoop::EventLoop() : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (!epoll_) throw_errno("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = stop_.fd();
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, stop_.fd(), &ev) < 0)
    throw_errno("epoll_ctl(stop eventfd)");
}

void EventLoop::add(int fd, uint32_t events, Handler handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
    throw_errno("epoll_ctl(ADD fd " + std::to_string(fd) + ")");
  handlers_[fd] = std::make_shared<Handler>(std::move(handler));
}

void EventLoop::modify(int fd, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
}

void EventLoop::remove(int fd) {
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  handlers_.erase(fd);
}

void EventLoop::run() {
  while (!stop_requested_) run_once();
  stop_requested_ = false;
}

int EventLoop::run_once(int timeout_ms) {
  std::array<epoll_event, 32> events;
  const int n =
      ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return 0;
    spdlog::error("event loop: {}", errno_message("epoll_wait"));
    stop_requested_ = true;
    return 0;
  }
  int ran = 0;
  for (int i = 0; i < n; ++i) {
    const int fd = events[i].data.fd;
    if (fd == stop_.fd()) {
      stop_.consume();
      stop_requested_ = true;
      return ran;
    }
    auto it = handlers_.find(fd);
    if (it == handlers_.end()) continue;            // removed by an earlier handler in this batch
    std::shared_ptr<Handler> handler = it->second;  // survives its own remove()
    ++ran;
    try {
      (*handler)(events[i].events);
    } catch (const std::exception& e) {
      spdlog::error("event handler for fd {} failed and was removed: {}", fd, e.what());
      remove(fd);
    }
  }
  return ran;
}

}  // namespace kiln
