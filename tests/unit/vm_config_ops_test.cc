// The configuration objects' validators and state-apply functions (vmm/vm_config_ops.h), which
// the API, the config files and the CLI flags all go through.
#include "vmm/vm_config_ops.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

TEST(VmConfigOps, ValidatorsNameTheField) {
  EXPECT_EQ(validate(DriveConfig{"/d.img", false, "a-b", false}).value().field, "drive_id");
  EXPECT_EQ(validate(DriveConfig{"", false, "data", false}).value().field, "path_on_host");
  EXPECT_FALSE(validate(DriveConfig{"/d.img", false, "", false}));  // no id given (--disk)
  EXPECT_FALSE(validate(DriveConfig{"/d.img", false, "data_1", false}));

  NetConfig net{"eth0", "tap0", std::nullopt, std::nullopt};
  EXPECT_FALSE(validate(net));
  net.host_dev_name = "a/b";
  EXPECT_EQ(validate(net).value().field, "host_dev_name");
  net.host_dev_name = "tap0";
  net.guest_mac = MacAddress::parse("01:00:00:00:00:01");  // multicast
  EXPECT_EQ(validate(net).value().field, "guest_mac");
  net.guest_mac.reset();
  net.mtu = 67;
  EXPECT_EQ(validate(net).value().field, "mtu");

  MachineConfigUpdate machine;
  machine.vcpus = 0;
  EXPECT_EQ(validate(machine).value().field, "vcpu_count");
  machine.vcpus = 2;
  machine.memory_mib = 8;
  EXPECT_EQ(validate(machine).value().field, "mem_size_mib");

  EXPECT_EQ(validate(VsockConfig{2, "/tmp/v.sock", ""}).value().field, "guest_cid");
  EXPECT_EQ(validate(VsockConfig{3, "/nonexistent/dir/v.sock", ""}).value().field, "uds_path");
  EXPECT_EQ(validate(TokenBucketConfig{0, 0, 1000, false}).value().field, "size");
  EXPECT_EQ(validate(TokenBucketConfig{1, 0, 0, false}).value().field, "refill_time");
}

TEST(VmConfigOps, AddDriveKeepsOneRootFirstAndChangesNothingOnAProblem) {
  VmConfig config;
  EXPECT_FALSE(add_drive(config, {"/data.img", false, "data", false}));
  EXPECT_FALSE(add_drive(config, {"/root.img", false, "rootfs", true}));
  ASSERT_EQ(config.drives.size(), 2u);
  EXPECT_EQ(config.drives[0].id, "rootfs");
  const auto problem = add_drive(config, {"/other.img", false, "other", true});
  ASSERT_TRUE(problem);
  EXPECT_EQ(problem->field, "is_root_device");
  EXPECT_NE(problem->problem.find("A root block device already exists!"), std::string::npos);
  EXPECT_EQ(config.drives.size(), 2u);
  // The same id replaces.
  EXPECT_FALSE(add_drive(config, {"/new-data.img", true, "data", false}));
  ASSERT_EQ(config.drives.size(), 2u);
  EXPECT_EQ(config.drives[1].path, "/new-data.img");
}

TEST(VmConfigOps, AddNetworkInterfaceRefusesATapOrMacInUse) {
  VmConfig config;
  const auto mac = MacAddress::parse("06:00:00:00:00:01");
  EXPECT_FALSE(add_network_interface(config, {"eth0", "tap0", mac, std::nullopt}));
  EXPECT_EQ(add_network_interface(config, {"eth1", "tap0", std::nullopt, std::nullopt})->field,
            "host_dev_name");
  EXPECT_EQ(add_network_interface(config, {"eth1", "tap1", mac, std::nullopt})->field, "guest_mac");
  EXPECT_EQ(config.nets.size(), 1u);
  EXPECT_FALSE(add_network_interface(config, {"eth0", "tap9", mac, std::nullopt}));  // replaces
  ASSERT_EQ(config.nets.size(), 1u);
  EXPECT_EQ(config.nets[0].host_dev_name, "tap9");
}

TEST(VmConfigOps, MachineConfigPatchChecksHugePagesAgainstTheResultingSize) {
  VmConfig config;
  config.memory_mib = 129;
  MachineConfigUpdate update;
  update.huge_pages = HugePages::k2M;
  EXPECT_EQ(apply_machine_config(config, update, true)->field, "huge_pages");
  EXPECT_EQ(config.huge_pages, HugePages::kNone);
  update.memory_mib = 128;
  EXPECT_FALSE(apply_machine_config(config, update, true));
  EXPECT_EQ(config.huge_pages, HugePages::k2M);
  // A PUT without huge_pages is back to None.
  MachineConfigUpdate put;
  put.vcpus = 1;
  put.memory_mib = 256;
  EXPECT_FALSE(apply_machine_config(config, put, false));
  EXPECT_EQ(config.huge_pages, HugePages::kNone);
}

}  // namespace
}  // namespace kiln
