// The agent's kernel command line parameters (agent/boot_config.h).
#include "agent/boot_config.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace kiln::agent {
namespace {

std::string error_of(const std::string& cmdline) {
  try {
    parse_boot_config(cmdline);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "accepted";
}

TEST(AgentBootConfig, BlockRootWithDefaults) {
  auto c = parse_boot_config("console=ttyS0 reboot=k kiln.root=/dev/vda panic=1\n");
  EXPECT_EQ(c.root, "/dev/vda");
  EXPECT_EQ(c.rootfstype, "ext4");
  EXPECT_EQ(c.rootflags, "");
  EXPECT_FALSE(c.read_only);
  EXPECT_EQ(c.hostname, "kiln");
  EXPECT_EQ(c.port, 1024u);
}

TEST(AgentBootConfig, VirtiofsRootFlagsHostnamePort) {
  auto c = parse_boot_config(
      "kiln.rootfstype=virtiofs kiln.root=myroot kiln.rootflags=ro,dax=never "
      "kiln.hostname=box kiln.port=5000");
  EXPECT_EQ(c.root, "myroot");
  EXPECT_EQ(c.rootfstype, "virtiofs");
  EXPECT_TRUE(c.read_only);
  EXPECT_EQ(c.rootflags, "dax=never");
  EXPECT_EQ(c.hostname, "box");
  EXPECT_EQ(c.port, 5000u);
}

TEST(AgentBootConfig, BadParametersAreNamed) {
  EXPECT_EQ(error_of("console=ttyS0"), "kiln.root= is missing (e.g. kiln.root=/dev/vda)");
  EXPECT_EQ(error_of("kiln.root="), "kiln.root needs a value (kiln.root=...)");
  EXPECT_EQ(error_of("kiln.root=/dev/vda kiln.port=x"), "kiln.port='x' is not a port number");
  EXPECT_EQ(error_of("kiln.root=/dev/vda kiln.port=0"), "kiln.port='0' is not a port number");
  EXPECT_EQ(error_of("kiln.root=/dev/vda kiln.rooot=1").rfind("unknown parameter kiln.rooot", 0),
            0u);
  EXPECT_EQ(error_of("kiln.root=/dev/vda kiln.hostname=" + std::string(65, 'h')),
            "kiln.hostname is longer than 64 bytes");
}

}  // namespace
}  // namespace kiln::agent
