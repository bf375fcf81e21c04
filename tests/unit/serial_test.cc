#include "devices/legacy/serial.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/error.h"

#include "tests/support/snapshot_checks.h"
#include "tests/support/uart_guest.h"

namespace kiln {
namespace {

class SerialTest : public ::testing::Test {
 protected:
  uint8_t in(uint64_t offset) {
    uint8_t v = 0;
    serial.read(offset, std::span(&v, 1));
    return v;
  }
  void out(uint64_t offset, uint8_t v) { serial.write(offset, std::span(&v, 1)); }

  std::string output;
  int irqs = 0;
  // The output sink takes up to `sink_room` bytes (a stalled console when 0).
  size_t sink(std::span<const uint8_t> b) {
    const size_t n = std::min(b.size(), sink_room);
    output.append(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n));
    sink_room -= n;
    return n;
  }
  size_t sink_room = SIZE_MAX;
  Serial serial{[this](std::span<const uint8_t> b) { return sink(b); }, [this] { ++irqs; }};
};

TEST_F(SerialTest, TransmitsToOutput) {
  for (char c : std::string("hi\n")) out(0, static_cast<uint8_t>(c));
  EXPECT_EQ(output, "hi\n");
  EXPECT_EQ(in(5) & 0x60, 0x60);  // THR empty, transmitter idle
  EXPECT_EQ(irqs, 0);             // no interrupt enabled
}

TEST_F(SerialTest, ThrEmptyInterruptOnEnableAndAfterEachWrite) {
  out(1, 0x02);  // IER: THR empty
  EXPECT_EQ(irqs, 1);
  EXPECT_EQ(in(2) & 0x0f, 0x02);  // IIR: THR empty; reading acknowledges it
  EXPECT_EQ(in(2) & 0x0f, 0x01);  // nothing pending now
  out(0, 'a');
  EXPECT_EQ(irqs, 2);
  EXPECT_EQ(in(2) & 0x0f, 0x02);
}

TEST_F(SerialTest, ReceivedDataRaisesInterruptAndIsReadInOrder) {
  const uint8_t data[] = {'o', 'k'};
  EXPECT_EQ(serial.enqueue_input(data), 2u);
  EXPECT_EQ(irqs, 0);             // RX interrupt disabled
  EXPECT_EQ(in(5) & 0x01, 0x00);  // and so the input waits outside the FIFO
  out(1, 0x01);                   // IER: received data
  EXPECT_EQ(irqs, 1);
  EXPECT_EQ(in(2) & 0x0f, 0x04);
  EXPECT_EQ(in(0), 'o');
  EXPECT_EQ(in(0), 'k');
  EXPECT_EQ(in(5) & 0x01, 0x00);
  EXPECT_EQ(in(2) & 0x0f, 0x01);
}

TEST_F(SerialTest, InputBeyondCapacityIsNotAccepted) {
  std::vector<uint8_t> big(Serial::kInputCapacity + 10, 'z');
  EXPECT_EQ(serial.enqueue_input(big), Serial::kInputCapacity);
  EXPECT_EQ(serial.rx_room(), 0u);
  EXPECT_EQ(serial.enqueue_input(big), 0u);
}

TEST_F(SerialTest, DivisorLatchDoesNotTransmit) {
  out(3, 0x80);  // DLAB
  out(0, 0x01);
  out(1, 0x00);
  EXPECT_EQ(in(0), 0x01);
  out(3, 0x03);
  EXPECT_TRUE(output.empty());
}

TEST_F(SerialTest, LoopbackPassesLinuxProbe) {
  out(4, 0x1a);  // LOOP | OUT2 | RTS
  EXPECT_EQ(in(6) & 0xf0, 0x90);
  out(0, 'q');
  EXPECT_TRUE(output.empty());
  EXPECT_EQ(in(0), 'q');
  out(4, 0x08);
  EXPECT_EQ(in(6) & 0xb0, 0xb0);  // DCD, DSR, CTS
}

TEST_F(SerialTest, InputGivenBeforeLinuxOpensThePortSurvivesItsStartup) {
  const std::string typed = "echo hi; poweroff -f\n";
  ASSERT_EQ(
      serial.enqueue_input(std::span(reinterpret_cast<const uint8_t*>(typed.data()), typed.size())),
      typed.size());
  testsupport::UartGuest guest(serial);
  guest.linux_probe_and_open();  // clears the FIFO and discards RBR before enabling RDI
  EXPECT_GE(irqs, 1);            // the open port has data waiting
  std::string got;
  for (int i = 0; i < 10 && got.size() < typed.size(); ++i) got += guest.receive();
  EXPECT_EQ(got, typed);
}

TEST_F(SerialTest, FifoHoldsSixteenBytesAndAClearDropsOnlyThose) {
  out(1, 0x01);
  std::string data;
  for (int i = 0; i < 40; ++i) data.push_back(static_cast<char>('A' + i));
  serial.enqueue_input(std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
  EXPECT_EQ(in(5) & 0x01, 0x01);  // the look pulls the first 16 bytes into the FIFO
  out(2, 0x02);                   // FCR: clear the receive FIFO
  EXPECT_EQ(in(0), 'A' + 16);     // what was never shown to the guest is still there
  std::string rest;
  while (in(5) & 0x01) rest.push_back(static_cast<char>(in(0)));
  EXPECT_EQ(rest, data.substr(17));
}

TEST_F(SerialTest, StalledOutputMakesTheTransmitterBusyInsteadOfBlocking) {
  out(1, 0x02);  // THRE interrupts
  ASSERT_EQ(in(2) & 0x0f, 0x02);
  const int irqs_before = irqs;
  sink_room = 0;  // stdout's reader stalled
  out(0, 'a');
  EXPECT_EQ(in(5) & 0x60, 0x00);  // THR not empty: a driver honouring LSR waits
  EXPECT_EQ(in(2) & 0x0f, 0x01);  // and gets no THRE interrupt
  EXPECT_EQ(irqs, irqs_before);
  for (char c : std::string("bcdefghijklmnopqrstu")) out(0, static_cast<uint8_t>(c));
  EXPECT_TRUE(output.empty());
  sink_room = SIZE_MAX;  // the reader came back
  serial.tx_space();
  EXPECT_EQ(output, "abcdefghijklmnop");  // the 16-byte FIFO; the rest was an overrun
  EXPECT_EQ(in(5) & 0x60, 0x60);
  EXPECT_EQ(irqs, irqs_before + 1);
  EXPECT_EQ(in(2) & 0x0f, 0x02);
}

TEST_F(SerialTest, ScratchRegisterHoldsValue) {
  out(7, 0x5a);
  EXPECT_EQ(in(7), 0x5a);
}

}  // namespace
}  // namespace kiln

namespace kiln {
namespace {

TEST(SerialRxSpace, NotifiesWhenGuestDrainsAFullBuffer) {
  int notified = 0;
  Serial serial([](std::span<const uint8_t> b) { return b.size(); }, [] {}, [&] { ++notified; });
  std::vector<uint8_t> fill(Serial::kInputCapacity, 'a');
  const uint8_t extra = 'b';
  EXPECT_EQ(serial.enqueue_input(fill), Serial::kInputCapacity);
  EXPECT_EQ(notified, 0);
  EXPECT_EQ(serial.enqueue_input(std::span(&extra, 1)), 0u);  // full: caller keeps it
  const uint8_t rdi = 0x01;
  serial.write(1, std::span(&rdi, 1));
  uint8_t byte = 0;
  serial.read(0, std::span(&byte, 1));
  EXPECT_EQ(byte, 'a');
  EXPECT_EQ(notified, 1);
  serial.read(0, std::span(&byte, 1));
  EXPECT_EQ(notified, 1);  // only once per full episode
}

TEST(SerialRxSpace, NotifiesAfterAnExactFill) {
  // A reader that never offers more than rx_room() fills the buffer exactly; it must still be
  // told when room comes back (else console input stops for good).
  int notified = 0;
  Serial serial([](std::span<const uint8_t> b) { return b.size(); }, [] {}, [&] { ++notified; });
  std::vector<uint8_t> fill(serial.rx_room(), 'a');
  EXPECT_EQ(serial.enqueue_input(fill), fill.size());
  EXPECT_EQ(serial.rx_room(), 0u);
  const uint8_t rdi = 0x01;
  serial.write(1, std::span(&rdi, 1));
  uint8_t byte = 0;
  serial.read(0, std::span(&byte, 1));
  EXPECT_EQ(notified, 1);
}

// Snapshottable: a UART mid-conversation (FIFO data, host input waiting, a stalled transmit,
// registers set) saved and restored into a fresh one behaves the same from then on; a state
// that is truncated, of another version or out of bounds is refused and leaves it untouched.
TEST_F(SerialTest, SnapshotRestoresTheSameUart) {
  out(3, 0x80);  // DLAB: divisor 3 (38400 baud)
  out(0, 3);
  out(3, 0x1b);  // 8E1
  out(7, 0x5a);
  out(1, 0x01);  // RX interrupts
  std::string typed = "hello, restored";
  serial.enqueue_input(std::span(reinterpret_cast<const uint8_t*>(typed.data()), typed.size()));
  EXPECT_EQ(in(0), 'h');
  sink_room = 0;
  out(0, 'x');  // waits in the transmit FIFO
  std::vector<uint8_t> state = serial.save();

  std::string copy_out;
  Serial copy{[&](std::span<const uint8_t> b) {
                copy_out.append(b.begin(), b.end());
                return b.size();
              },
              [] {}};
  copy.restore(state);
  EXPECT_EQ(copy.save(), state);
  auto copy_in = [&](uint64_t off) {
    uint8_t v = 0;
    copy.read(off, std::span(&v, 1));
    return v;
  };
  EXPECT_EQ(copy_in(3), 0x1b);
  EXPECT_EQ(copy_in(7), 0x5a);
  copy.tx_space();
  EXPECT_EQ(copy_out, "x");
  std::string rest;
  while (copy_in(5) & 0x01) rest += static_cast<char>(copy_in(0));
  EXPECT_EQ(rest, "ello, restored");

  Serial fresh{[](std::span<const uint8_t> b) { return b.size(); }, [] {}};
  std::vector<uint8_t> ier_out_of_range = state;
  ier_out_of_range[2] = 0xff;  // IER with bits it never holds
  testing::expect_bad_states_refused(fresh, state, {ier_out_of_range});
}

}  // namespace
}  // namespace kiln
