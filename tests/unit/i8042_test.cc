// The i8042 controller and keyboard as a guest driver sees them: probing, the output buffer and
// IRQ 1, reset, and Ctrl-Alt-Del in both scan code sets.
#include "devices/legacy/i8042.h"

#include <gtest/gtest.h>

#include <vector>

#include "base/error.h"
#include "tests/support/snapshot_checks.h"

namespace kiln {
namespace {

class I8042Test : public ::testing::Test {
 protected:
  I8042 kbd_{[this] { ++resets_; }, [this] { ++irqs_; }};
  int resets_ = 0;
  int irqs_ = 0;

  void command(uint8_t cmd) { kbd_.write(4, std::span(&cmd, 1)); }
  void data(uint8_t value) { kbd_.write(0, std::span(&value, 1)); }
  uint8_t status() {
    uint8_t v = 0;
    kbd_.read(4, std::span(&v, 1));
    return v;
  }
  // Reads the output buffer until it is empty.
  std::vector<uint8_t> drain() {
    std::vector<uint8_t> out;
    while (status() & 0x01) {
      uint8_t v = 0;
      kbd_.read(0, std::span(&v, 1));
      out.push_back(v);
    }
    return out;
  }
  uint8_t command_byte() {
    command(0x20);
    return drain().at(0);
  }
};

using Bytes = std::vector<uint8_t>;

TEST_F(I8042Test, StartsEmptyWithSystemFlagAndInterruptOn) {
  EXPECT_EQ(status() & 0x01, 0);  // nothing to read
  EXPECT_NE(status() & 0x04, 0);  // system flag: self test passed
  EXPECT_EQ(command_byte(), 0x25);
  uint8_t v = 0x12;
  kbd_.read(0, std::span(&v, 1));  // an empty buffer reads 0
  EXPECT_EQ(v, 0);
}

TEST_F(I8042Test, ControllerCommands) {
  command(0xaa);
  EXPECT_EQ(drain(), Bytes{0x55});
  command(0xab);
  EXPECT_EQ(drain(), Bytes{0x00});
  command(0x60);
  data(0x47);
  EXPECT_EQ(command_byte(), 0x47);
  command(0xad);
  EXPECT_EQ(command_byte() & 0x10, 0x10);
  command(0xae);
  EXPECT_EQ(command_byte() & 0x10, 0);
  command(0xa8);
  EXPECT_EQ(command_byte() & 0x20, 0);
  command(0xa7);
  EXPECT_EQ(command_byte() & 0x20, 0x20);
  command(0xd3);  // AUX loopback: no mouse, no answer
  EXPECT_TRUE(drain().empty());
  command(0xd4);  // a byte for the mouse is swallowed, not taken as a keyboard command
  data(0xff);
  EXPECT_TRUE(drain().empty());
  command(0xa7);
  EXPECT_NE(status() & 0x08, 0);  // last write went to the command port
  data(0xee);
  EXPECT_EQ(status() & 0x08, 0);
  EXPECT_EQ(drain(), Bytes{0xee});
}

TEST_F(I8042Test, KeyboardProbeAsLinuxDoesIt) {
  data(0xff);
  EXPECT_EQ(drain(), (Bytes{0xfa, 0xaa}));
  data(0xf2);
  EXPECT_EQ(drain(), (Bytes{0xfa, 0xab, 0x83}));
  data(0xed);  // LEDs: ack, then ack the argument
  EXPECT_EQ(drain(), Bytes{0xfa});
  data(0x00);
  EXPECT_EQ(drain(), Bytes{0xfa});
  data(0xf0);  // scan set query
  data(0x00);
  EXPECT_EQ(drain(), (Bytes{0xfa, 0xfa, 0x02}));
  data(0xf0);
  data(0x03);  // set 3 is refused
  EXPECT_EQ(drain(), (Bytes{0xfa, 0xfe}));
  data(0xf3);
  data(0x20);
  data(0xf4);
  EXPECT_EQ(drain(), (Bytes{0xfa, 0xfa, 0xfa}));
  data(0x42);  // not a keyboard command
  EXPECT_EQ(drain(), Bytes{0xfe});
}

TEST_F(I8042Test, IdentifyUnderTranslation) {
  command(0x60);
  data(0x65);  // translation on
  data(0xf2);
  EXPECT_EQ(drain(), (Bytes{0xfa, 0xab, 0x41}));
}

TEST_F(I8042Test, IrqRaisedForEachByteLoadedIntoTheOutputBuffer) {
  data(0xff);  // two bytes: IRQ for the first now, for the second when the first is read
  EXPECT_EQ(irqs_, 1);
  drain();
  EXPECT_EQ(irqs_, 2);
  command(0x60);
  data(0x24);  // keyboard interrupt off
  irqs_ = 0;
  data(0xf4);
  drain();
  EXPECT_EQ(irqs_, 0);
  data(0xf4);  // a byte waits; turning the interrupt on delivers it
  command(0x60);
  data(0x25);
  EXPECT_EQ(irqs_, 1);
}

TEST_F(I8042Test, ResetFromCommandPortAndOutputPort) {
  data(0xfe);  // on the data port 0xfe is a keyboard byte, not a reset
  EXPECT_EQ(resets_, 0);
  command(0xfe);
  EXPECT_EQ(resets_, 1);
  command(0xd1);
  data(0x03);  // reset line high: nothing
  EXPECT_EQ(resets_, 1);
  command(0xd1);
  data(0x02);  // reset line low
  EXPECT_EQ(resets_, 2);
}

TEST_F(I8042Test, CtrlAltDelInScanSet2) {
  ASSERT_EQ(kbd_.send_ctrl_alt_del(), I8042::KeyResult::kSent);
  EXPECT_EQ(irqs_, 1);
  EXPECT_EQ(drain(), (Bytes{0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14}));
  EXPECT_EQ(irqs_, 11);
}

TEST_F(I8042Test, CtrlAltDelInScanSet1UnderTranslation) {
  command(0x60);
  data(0x65);
  ASSERT_EQ(kbd_.send_ctrl_alt_del(), I8042::KeyResult::kSent);
  EXPECT_EQ(drain(), (Bytes{0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d}));
}

TEST_F(I8042Test, CtrlAltDelRefusedWhenItCannotBeDelivered) {
  data(0xf5);  // keyboard disabled by the guest
  EXPECT_EQ(kbd_.send_ctrl_alt_del(), I8042::KeyResult::kKeyboardDisabled);
  data(0xf4);
  drain();
  ASSERT_EQ(kbd_.send_ctrl_alt_del(), I8042::KeyResult::kSent);  // 11 bytes, never read
  EXPECT_EQ(kbd_.send_ctrl_alt_del(), I8042::KeyResult::kQueueFull);
  EXPECT_EQ(drain().size(), 11u);  // the refused press left nothing half-queued
  command(0xad);
  EXPECT_EQ(kbd_.send_ctrl_alt_del(), I8042::KeyResult::kKeyboardDisabled);
}

TEST_F(I8042Test, GuestThatNeverReadsCannotGrowTheQueue) {
  for (int i = 0; i < 100; ++i) data(0xf2);
  EXPECT_EQ(drain().size(), I8042::kQueueCapacity);
}

// Snapshottable: a controller mid-command (translation on, a scan-set command waiting for its
// argument, an ACK in the output buffer) restored into a fresh one carries on the same; bad
// states are refused and leave it as it was.
TEST_F(I8042Test, SnapshotRestoresMidCommand) {
  command(0x60);
  data(0x65);  // command byte: translation on
  data(0xf0);  // keyboard: select scan set (its argument comes next)
  std::vector<uint8_t> state = kbd_.save();

  int irqs = 0;
  I8042 copy{[] {}, [&] { ++irqs; }};
  copy.restore(state);
  EXPECT_EQ(copy.save(), state);
  auto read = [&](uint64_t off) {
    uint8_t v = 0;
    copy.read(off, std::span(&v, 1));
    return v;
  };
  auto write = [&](uint64_t off, uint8_t v) { copy.write(off, std::span(&v, 1)); };
  EXPECT_EQ(read(4) & 0x01, 0x01);
  EXPECT_EQ(read(0), 0xfa);  // the ACK that waited
  write(0, 0x00);            // the argument: report the set
  EXPECT_EQ(read(0), 0xfa);
  EXPECT_EQ(read(0), 0x41);  // set 2, as translation reports it
  write(4, 0x20);
  EXPECT_EQ(read(0), 0x65);

  I8042 fresh{[] {}, [] {}};
  std::vector<std::vector<uint8_t>> bad;
  for (size_t at : {state.size() - 1, state.size() - 2, state.size() - 3}) {
    bad.push_back(state);
    bad.back()[at] = 0x77;  // scanning, scan set, awaited keyboard argument: values never held
  }
  std::vector<uint8_t> long_queue = {1, 0, 17, 0, 0, 0};  // a 17-byte queue (capacity 16)
  long_queue.resize(long_queue.size() + 17 + 6);
  bad.push_back(long_queue);
  testing::expect_bad_states_refused(fresh, state, bad);
}

}  // namespace
}  // namespace kiln
