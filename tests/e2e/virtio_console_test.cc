// End-to-end virtio-console: with --console virtio the guest's hvc0 is the console (output on
// stdout, stdin typed into it) and the UART's output goes nowhere.
#include <gtest/gtest.h>

#include "tests/e2e/kiln_process.h"

namespace kiln::e2e {
namespace {

TEST(VirtioConsoleGuest, Hvc0IsTheConsole) {
  KILN_REQUIRE_KVM();
  KilnRun r = run_kiln({"run", "--kernel", guest_path("virtio_console"), "--console", "virtio"},
                       {"HVC READY", "typed into hvc0\n"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("HVC size="), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HVC GOT:typed into hvc0\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("UART OUTPUT"), std::string::npos) << r.out;
}

TEST(VirtioConsoleGuest, SerialStaysTheDefaultConsole) {
  KILN_REQUIRE_KVM();
  KilnRun r = run_kiln({"run", "--kernel", guest_path("virtio_console")});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("UART OUTPUT"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HVC no device"), std::string::npos) << r.out;
}

TEST(VirtioConsoleGuest, NoneShowsNothing) {
  KILN_REQUIRE_KVM();
  KilnRun r = run_kiln({"run", "--kernel", guest_path("virtio_console"), "--console", "none"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(VirtioConsoleFlags, UnknownModeIsAUsageError) {
  KilnRun r = run_kiln({"run", "--kernel", guest_path("virtio_console"), "--console", "vga"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--console"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kiln::e2e
