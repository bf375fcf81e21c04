// The console reader between a pipe (the host's stdin) and the UART: input is never dropped,
// stdin is read only as far as it can be held, reading resumes when the guest drains the
// device, EOF does not spin the loop, and a paused reader hands nothing over.
#include "vmm/console_reader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "base/unique_fd.h"
#include "devices/legacy/serial.h"
#include "tests/support/uart_guest.h"

namespace kiln {
namespace {

class ConsoleReaderTest : public ::testing::Test {
 protected:
  ConsoleReaderTest() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    read_end = UniqueFd(fds[0]);
    write_end = UniqueFd(fds[1]);
    reader = std::make_unique<ConsoleReader>(loop, read_end.get(), serial, [this] { ++quits; });
    reader->start();
  }
  void write_input(const std::string& s) {
    ASSERT_EQ(::write(write_end.get(), s.data(), s.size()), static_cast<ssize_t>(s.size()));
  }
  // Runs the loop until it has had nothing to do for a few rounds; returns handlers run.
  int settle() {
    int total = 0, idle = 0;
    while (idle < 3) {
      const int ran = loop.run_once(5);
      total += ran;
      idle = ran == 0 ? idle + 1 : 0;
      if (total > 100000) break;  // a spinning loop
    }
    return total;
  }
  int unread_in_pipe() {
    int n = 0;
    ::ioctl(read_end.get(), FIONREAD, &n);
    return n;
  }

  EventLoop loop;
  UniqueFd read_end, write_end;
  std::unique_ptr<ConsoleReader> reader;
  int quits = 0;
  Serial serial{[](std::span<const uint8_t> b) { return b.size(); }, [] {},
                [this] { reader->space_available(); }};
  testsupport::UartGuest guest{serial};
};

TEST_F(ConsoleReaderTest, PipedInputBeforeTheGuestListensReachesItWhole) {
  const std::string typed = "echo hi; poweroff -f\n";
  write_input(typed);
  write_end.reset();  // printf exits: EOF after the line
  settle();
  EXPECT_EQ(loop.run_once(20), 0);  // EOF: stdin is no longer watched, nothing spins
  guest.linux_probe_and_open();
  std::string got;
  for (int i = 0; i < 10 && got.size() < typed.size(); ++i) got += guest.receive();
  EXPECT_EQ(got, typed);
}

TEST_F(ConsoleReaderTest, ReadingResumesWhenTheGuestDrainsAFullDevice) {
  std::string data;
  for (size_t i = 0; i < 3 * Serial::kInputCapacity + 5; ++i)
    data.push_back(static_cast<char>('a' + i % 26));
  write_input(data);
  settle();
  // The UART's buffer and the reader's few bytes are full; the rest stays in the pipe.
  EXPECT_EQ(serial.rx_room(), 0u);
  EXPECT_LE(reader->pending(), ConsoleReader::kPending + 1);
  EXPECT_GT(unread_in_pipe(), 0);
  EXPECT_EQ(settle(), 0);  // and nothing spins while the guest does not read

  guest.linux_probe_and_open();
  std::string got;
  for (int round = 0; round < 10000 && got.size() < data.size(); ++round) {
    got += guest.receive();
    loop.run_once(0);  // rx_space -> the reader offers more
  }
  EXPECT_EQ(got, data);
  EXPECT_EQ(unread_in_pipe(), 0);
}

TEST_F(ConsoleReaderTest, PausedReaderHandsNothingOverUntilResume) {
  reader->pause();
  write_input("abc");
  settle();
  EXPECT_EQ(serial.rx_room(), Serial::kInputCapacity);  // the device got nothing
  EXPECT_EQ(reader->pending(), 3u);
  reader->resume();
  settle();
  EXPECT_EQ(serial.rx_room(), Serial::kInputCapacity - 3);
  EXPECT_EQ(reader->pending(), 0u);
}

TEST_F(ConsoleReaderTest, EscapeQuitsAndCtrlACtrlAPassesOne) {
  write_input("\x01\x01z\x01x");
  settle();
  EXPECT_EQ(quits, 1);
  guest.out(1, 0x01);
  EXPECT_EQ(guest.receive(), "\x01z");
}

}  // namespace
}  // namespace kiln
