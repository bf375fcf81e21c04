#include <gtest/gtest.h>

#include "devices/legacy/i8042.h"
#include "vmm/console_escape.h"

namespace kiln {
namespace {

TEST(I8042, ResetCommandOnCommandPortOnly) {
  int resets = 0;
  I8042 kbd([&] { ++resets; });
  const uint8_t fe = 0xfe, other = 0xaa;
  kbd.write(0, std::span(&fe, 1));  // data port: not a command
  kbd.write(4, std::span(&other, 1));
  EXPECT_EQ(resets, 0);
  kbd.write(4, std::span(&fe, 1));
  EXPECT_EQ(resets, 1);
  uint8_t status = 0xff;
  kbd.read(4, std::span(&status, 1));
  EXPECT_EQ(status, 0);
}

std::vector<uint8_t> bytes(std::string s) {
  return {s.begin(), s.end()};
}

TEST(ConsoleEscape, PassesOrdinaryInput) {
  ConsoleEscape esc;
  auto r = esc.feed(bytes("ls -l\r"));
  EXPECT_EQ(r.forward, bytes("ls -l\r"));
  EXPECT_FALSE(r.quit);
}

TEST(ConsoleEscape, CtrlAXQuitsEvenAcrossReads) {
  ConsoleEscape esc;
  auto r1 = esc.feed(bytes("a\x01"));
  EXPECT_EQ(r1.forward, bytes("a"));
  EXPECT_FALSE(r1.quit);
  auto r2 = esc.feed(bytes("x"));
  EXPECT_TRUE(r2.quit);
}

TEST(ConsoleEscape, DoubleCtrlASendsOneAndOtherKeysPassThrough) {
  ConsoleEscape esc;
  EXPECT_EQ(esc.feed(bytes("\x01\x01")).forward, bytes("\x01"));
  EXPECT_EQ(esc.feed(bytes("\x01y")).forward, bytes("\x01y"));
}

}  // namespace
}  // namespace kiln
