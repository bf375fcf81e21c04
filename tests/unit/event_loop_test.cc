#include "base/event_loop.h"

#include <dirent.h>
#include <gtest/gtest.h>

#include <sys/epoll.h>
#include "tests/support/test_files.h"

#include <thread>

namespace kiln {
namespace {

TEST(EventLoop, RunsHandlersOnItsThreadAndStops) {
  const int fds_before = test::count_open_fds();
  {
    EventLoop loop;
    EventFd ev;
    std::thread::id handler_thread;
    int calls = 0;
    loop.add(ev.fd(), EPOLLIN, [&](uint32_t) {
      ev.consume();
      handler_thread = std::this_thread::get_id();
      if (++calls == 3)
        loop.stop();
      else
        ev.signal();
    });
    ev.signal();
    std::thread t([&] { loop.run(); });
    const std::thread::id loop_thread = t.get_id();
    t.join();
    EXPECT_EQ(calls, 3);
    EXPECT_EQ(handler_thread, loop_thread);
  }
  EXPECT_EQ(test::count_open_fds(), fds_before);  // epoll and eventfds closed
}

TEST(EventLoop, HandlerMayRemoveItselfAndThrowingHandlerIsDropped) {
  EventLoop loop;
  EventFd a, b, done;
  int a_calls = 0, b_calls = 0;
  loop.add(a.fd(), EPOLLIN, [&](uint32_t) {
    ++a_calls;
    loop.remove(a.fd());  // fd stays readable; must not be called again
  });
  loop.add(b.fd(), EPOLLIN, [&](uint32_t) {
    ++b_calls;
    throw std::runtime_error("boom");
  });
  loop.add(done.fd(), EPOLLIN, [&](uint32_t) { loop.stop(); });
  a.signal();
  b.signal();
  std::thread t([&] { loop.run(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  done.signal();
  t.join();
  EXPECT_EQ(a_calls, 1);
  EXPECT_EQ(b_calls, 1);
}

}  // namespace
}  // namespace kiln
