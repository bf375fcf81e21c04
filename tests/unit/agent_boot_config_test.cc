// The agent's kernel command line parameters (agent/boot_config.h).
#include "agent/boot_config.h"

#include <gtest/gtest.h>
#include <sys/mount.h>

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

// A warm boot has no root yet; the workload's parameters come with configure, which cannot
// change the boot's own (kiln.warm, kiln.port).
TEST(AgentBootConfig, WarmBootAndConfigure) {
  auto c = parse_boot_config("console=ttyS0 kiln.warm=1 kiln.port=2000");
  EXPECT_TRUE(c.warm);
  EXPECT_EQ(c.root, "");
  EXPECT_EQ(c.port, 2000u);
  EXPECT_EQ(error_of("kiln.warm=2"), "kiln.warm='2': only 1");
  EXPECT_NE(error_of("kiln.warm=1 kiln.root=/dev/vda").find("from the host's configure"),
            std::string::npos);
  auto w =
      parse_boot_config("kiln.root=r kiln.rootfstype=virtiofs kiln.hostname=h", Source::kConfigure);
  EXPECT_FALSE(w.warm);
  EXPECT_EQ(w.root, "r");
  EXPECT_EQ(w.hostname, "h");
  for (const char* bad : {"kiln.root=r kiln.warm=1", "kiln.root=r kiln.port=5"}) {
    try {
      parse_boot_config(bad, Source::kConfigure);
      ADD_FAILURE() << bad << " accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("a configure cannot change it"), std::string::npos);
    }
  }
}

TEST(AgentBootConfig, MacChanges) {
  auto c = parse_boot_config(
      "kiln.root=r kiln.setmac=02:4B:69:6c:6e:00,52:54:00:12:34:56 kiln.setmac="
      "02:4b:69:6c:6e:01,02:00:00:00:00:09");
  ASSERT_EQ(c.mac_changes.size(), 2u);
  EXPECT_EQ(c.mac_changes[0].from, "02:4b:69:6c:6e:00");
  EXPECT_EQ(c.mac_changes[0].to, "52:54:00:12:34:56");
  EXPECT_EQ(c.mac_changes[1].to, "02:00:00:00:00:09");
  for (const char* bad : {"kiln.root=r kiln.setmac=02:4b:69:6c:6e:00",
                          "kiln.root=r kiln.setmac=02:4b:69:6c:6e:00,zz:00:00:00:00:00"})
    EXPECT_NE(error_of(bad).find("want OLD_MAC,NEW_MAC"), std::string::npos) << bad;
}

TEST(AgentBootConfig, VolumesInOrderWithReadOnly) {
  auto c = parse_boot_config("kiln.root=/dev/vda kiln.volume=v0:/data kiln.volume=v1:/srv/a/b:ro");
  ASSERT_EQ(c.volumes.size(), 2u);
  EXPECT_EQ(c.volumes[0].tag, "v0");
  EXPECT_EQ(c.volumes[0].target, "/data");
  EXPECT_FALSE(c.volumes[0].read_only);
  EXPECT_EQ(c.volumes[1].tag, "v1");
  EXPECT_EQ(c.volumes[1].target, "/srv/a/b");
  EXPECT_TRUE(c.volumes[1].read_only);
}

TEST(AgentBootConfig, OverlayOnlyTmpfs) {
  EXPECT_FALSE(parse_boot_config("kiln.root=r").overlay);
  EXPECT_TRUE(parse_boot_config("kiln.root=r kiln.overlay=tmpfs").overlay);
  EXPECT_EQ(error_of("kiln.root=r kiln.overlay=disk"), "kiln.overlay='disk': only tmpfs");
}

TEST(AgentBootConfig, BadVolumesAreRefused) {
  for (const char* v : {"v0", ":/data", "v0:data", "v0:/", "v0:/a/../etc", "v0:/a/./b",
                        "v0:/data:rw", "v0:/data:ro:x"}) {
    std::string e = error_of(std::string("kiln.root=/dev/vda kiln.volume=") + v);
    EXPECT_EQ(e.rfind(std::string("kiln.volume='") + v + "'", 0), 0u) << v << ": " << e;
  }
}

TEST(AgentBootConfig, NetworkAndDns) {
  auto c = parse_boot_config(
      "kiln.root=/dev/vda kiln.net=10.0.0.2/24,gw=10.0.0.1,mtu=1400 kiln.dns=10.0.0.1,1.1.1.1");
  ASSERT_EQ(c.nets.size(), 1u);
  EXPECT_EQ(c.nets[0].address, "10.0.0.2");
  EXPECT_EQ(c.nets[0].prefix, 24);
  EXPECT_EQ(c.nets[0].gateway, "10.0.0.1");
  EXPECT_EQ(c.nets[0].mtu, 1400u);
  EXPECT_EQ(c.nets[0].mac, "");
  EXPECT_EQ(c.dns, (std::vector<std::string>{"10.0.0.1", "1.1.1.1"}));
  auto bare = parse_boot_config("kiln.root=/dev/vda kiln.net=192.168.1.5/32");
  EXPECT_EQ(bare.nets.at(0).gateway, "");
  EXPECT_EQ(bare.nets.at(0).mtu, 0u);
  EXPECT_TRUE(parse_boot_config("kiln.root=/dev/vda").nets.empty());
  // kiln-oci's: each engine interface by its MAC, renamed to the engine's name.
  auto two = parse_boot_config(
      "kiln.root=/dev/vda kiln.net=10.88.0.2/16,gw=10.88.0.1,mac=02:AA:bb:cc:dd:01,name=eth0 "
      "kiln.net=10.89.0.2/24,mac=02:aa:bb:cc:dd:02,name=eth1");
  ASSERT_EQ(two.nets.size(), 2u);
  EXPECT_EQ(two.nets[0].mac, "02:aa:bb:cc:dd:01");
  EXPECT_EQ(two.nets[1].name, "eth1");
  EXPECT_EQ(two.nets[1].gateway, "");
}

TEST(AgentBootConfig, BadNetworksAreRefused) {
  for (const char* bad :
       {"kiln.net=10.0.0.2", "kiln.net=10.0.0.2/33", "kiln.net=10.0.0/24",
        "kiln.net=10.0.0.2/24,gw=x", "kiln.net=10.0.0.2/24,mtu=67",
        "kiln.net=10.0.0.2/24,mtu=99999999", "kiln.net=10.0.0.2/24,via=1", "kiln.net=::1/64",
        "kiln.net=10.0.0.2/-1", "kiln.net=10.0.0.2/24,mac=02:aa:bb:cc:dd:01",
        "kiln.net=10.0.0.2/24,name=eth1", "kiln.net=10.0.0.2/24,mac=zz,name=e",
        "kiln.net=10.0.0.2/24,mac=02:aa:bb:cc:dd:01,name=a/b",
        "kiln.net=10.0.0.2/24,mac=02:aa:bb:cc:dd:01,name=0123456789abcdef",
        "kiln.net=10.0.0.2/24 kiln.net=10.0.0.3/24",
        "kiln.net=10.0.0.2/24,gw=10.0.0.1,mac=02:aa:bb:cc:dd:01,name=e0 "
        "kiln.net=10.0.1.2/24,gw=10.0.1.1,mac=02:aa:bb:cc:dd:02,name=e1"})
    EXPECT_NE(error_of(std::string("kiln.root=/dev/vda ") + bad).find("kiln.net="),
              std::string::npos)
        << bad;
  EXPECT_NE(error_of("kiln.root=/dev/vda kiln.dns=1.2.3.4,foo").find("kiln.dns"),
            std::string::npos);
  EXPECT_NE(error_of("kiln.root=/dev/vda kiln.dns=1.1.1.1,2.2.2.2,3.3.3.3,4.4.4.4").find("1 to 3"),
            std::string::npos);
}

TEST(AgentBootConfig, FileBinds) {
  auto c = parse_boot_config(
      "kiln.root=x kiln.bind=kiln-f0:hosts:/etc/hosts "
      "kiln.bind=kiln-f0:.containerenv:/run/.containerenv:ro");
  ASSERT_EQ(c.binds.size(), 2u);
  EXPECT_EQ(c.binds[0].tag, "kiln-f0");
  EXPECT_EQ(c.binds[0].name, "hosts");
  EXPECT_EQ(c.binds[0].target, "/etc/hosts");
  EXPECT_FALSE(c.binds[0].read_only);
  EXPECT_EQ(c.binds[1].name, ".containerenv");
  EXPECT_TRUE(c.binds[1].read_only);
  for (const char* bad : {"t:hosts", "t:a/b:/etc/x", "t:..:/etc/x", "t:h:etc/x", "t:h:/etc/../x",
                          "t:h:/x:rw", ":h:/x", "t:h:/x:ro:more"})
    EXPECT_NE(error_of(std::string("kiln.root=x kiln.bind=") + bad).find("kiln.bind="),
              std::string::npos)
        << bad;
}

TEST(AgentBootConfig, TmpfsFlagsDataAndCopyUp) {
  auto c = parse_boot_config(
      "kiln.root=r kiln.tmpfs=/scratch:size=1m,mode=1777,noexec,nosuid "
      "kiln.tmpfs=/run:rw,nodev,tmpcopyup kiln.tmpfs=/ro:ro,nr_inodes=1k,uid=1000,gid=100 "
      "kiln.tmpfs=/plain");
  ASSERT_EQ(c.tmpfs.size(), 4u);
  EXPECT_EQ(c.tmpfs[0].target, "/scratch");
  EXPECT_EQ(c.tmpfs[0].flags, unsigned(MS_NOEXEC | MS_NOSUID));
  EXPECT_EQ(c.tmpfs[0].data, "size=1m,mode=1777");
  EXPECT_FALSE(c.tmpfs[0].copy_up);
  EXPECT_EQ(c.tmpfs[1].flags, unsigned(MS_NODEV));
  EXPECT_TRUE(c.tmpfs[1].copy_up);
  EXPECT_EQ(c.tmpfs[1].data, "");
  EXPECT_EQ(c.tmpfs[2].flags, unsigned(MS_RDONLY));
  EXPECT_EQ(c.tmpfs[2].data, "nr_inodes=1k,uid=1000,gid=100");
  EXPECT_EQ(c.tmpfs[3].target, "/plain");
  EXPECT_EQ(c.tmpfs[3].flags, 0u);
}

TEST(AgentBootConfig, BadTmpfsIsNamed) {
  const std::pair<std::string, std::string> cases[] = {
      {"kiln.tmpfs=rel", "kiln.tmpfs 'rel': the directory must be absolute"},
      {"kiln.tmpfs=/", "the directory must be absolute, not /"},
      {"kiln.tmpfs=/a/../b", "without '.' or '..'"},
      {"kiln.tmpfs=/t:size=", "a bad value in 'size='"},
      {"kiln.tmpfs=/t:size=1t", "a bad value in 'size=1t'"},
      {"kiln.tmpfs=/t:size=1234567890123456", "a bad value"},
      {"kiln.tmpfs=/t:mode=08", "a bad value in 'mode=08'"},
      {"kiln.tmpfs=/t:mode=17777", "a bad value in 'mode=17777'"},
      {"kiln.tmpfs=/t:uid=-1", "a bad value in 'uid=-1'"},
      {"kiln.tmpfs=/t:bind", "unknown option 'bind'"},
      {"kiln.tmpfs=/t:", "no options after ':'"},
      {"kiln.tmpfs=/t:ro,,nosuid", "unknown option ''"},
      {"kiln.tmpfs=/t:" + std::string("ro,") + "ro,ro,ro,ro,ro,ro,ro,ro,ro,ro,ro,ro,ro,ro,ro,ro",
       "more than 16 options"},
  };
  for (const auto& [param, want] : cases) {
    std::string e = error_of("kiln.root=r " + param);
    EXPECT_NE(e.find(want), std::string::npos) << param << " -> " << e;
  }
  EXPECT_NE(std::string(error_of("kiln.root=r kiln.tmpfs=/t")).find("accepted"), std::string::npos);
}

}  // namespace
}  // namespace kiln::agent
