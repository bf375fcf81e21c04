#include <gtest/gtest.h>

#include "vmm/console_escape.h"

namespace kiln {
namespace {

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
