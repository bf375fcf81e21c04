// The console output never blocks its writer: a stalled pipe reader makes write() take only
// what fits (bounded buffer), the loop flushes when the pipe drains and then calls the space
// callback; the caller's own fd stays blocking; a reader that went away drops the output.
#include "vmm/console_output.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.h"

namespace kiln {
namespace {

class ConsoleOutputTest : public ::testing::Test {
 protected:
  ConsoleOutputTest() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    read_end = UniqueFd(fds[0]);
    write_end = UniqueFd(fds[1]);
    output = std::make_unique<ConsoleOutput>(write_end.get());
    output->set_space_callback([this] { ++spaces; });
    output->attach(loop);
  }
  std::string drain_pipe() {
    ::fcntl(read_end.get(), F_SETFL, O_NONBLOCK);
    std::string got;
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(read_end.get(), buf, sizeof(buf));
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }

  EventLoop loop;
  UniqueFd read_end, write_end;
  std::unique_ptr<ConsoleOutput> output;
  int spaces = 0;
};

TEST_F(ConsoleOutputTest, StalledReaderBoundsTheBufferAndNeverBlocks) {
  std::string data;
  for (size_t i = 0; i < 512 * 1024; ++i) data.push_back(static_cast<char>('a' + i % 26));
  const auto bytes = std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  const size_t taken = output->write(bytes);  // would block for good on a blocking pipe
  EXPECT_LT(taken, data.size());
  EXPECT_EQ(output->buffered(), ConsoleOutput::kCapacity);
  EXPECT_FALSE(output->ready());
  EXPECT_EQ(output->write(bytes.subspan(taken)), 0u);            // full: nothing more is taken
  EXPECT_EQ(::fcntl(write_end.get(), F_GETFL) & O_NONBLOCK, 0);  // the shared fd is untouched
  EXPECT_EQ(spaces, 0);

  std::string got;
  size_t offered = taken;
  for (int round = 0; round < 1000 && got.size() < data.size(); ++round) {
    got += drain_pipe();
    loop.run_once(10);  // EPOLLOUT: flush, then the space callback
    if (offered < data.size()) offered += output->write(bytes.subspan(offered));
  }
  got += drain_pipe();
  EXPECT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data);
  EXPECT_GE(spaces, 1);
  EXPECT_EQ(output->buffered(), 0u);
  EXPECT_EQ(loop.run_once(20), 0);  // nothing waits: EPOLLOUT disarmed, no spin
}

TEST_F(ConsoleOutputTest, DrainAtShutdownWritesWhatWasBuffered) {
  const std::string s(200 * 1024, 'z');
  const size_t taken =
      output->write(std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  ASSERT_GT(output->buffered(), 0u);
  std::string got;
  std::thread slow_reader([&] {
    char buf[4096];
    while (got.size() < taken) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      const ssize_t n = ::read(read_end.get(), buf, sizeof(buf));
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
  });
  output->drain(5000);  // the loop no longer runs
  slow_reader.join();
  EXPECT_EQ(got.size(), taken);
  EXPECT_EQ(output->buffered(), 0u);
}

TEST_F(ConsoleOutputTest, ReaderGoneDropsOutputWithoutSpinning) {
  ::signal(SIGPIPE, SIG_IGN);
  const std::string s(200 * 1024, 'x');  // more than the pipe and the buffer hold
  const auto bytes = std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  output->write(bytes);
  read_end.reset();
  loop.run_once(20);  // EPOLLERR: the output is gone
  EXPECT_EQ(output->buffered(), 0u);
  EXPECT_EQ(output->write(bytes), s.size());  // dropped, never blocks
  EXPECT_EQ(loop.run_once(20), 0);
  EXPECT_EQ(spaces, 1);  // the writer waiting for room is released
}

}  // namespace
}  // namespace kiln
