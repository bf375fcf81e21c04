// api/snapshot_json.h: PUT /snapshot/create and /snapshot/load bodies as Firecracker defines
// them (each refusal names its field), and the snapshot's configuration text, which must give
// back the configuration it was made from.
#include "api/snapshot_json.h"

#include <gtest/gtest.h>

#include "api/cli.h"
#include "api/json_fields.h"
#include "base/error.h"
#include "tests/support/test_files.h"

namespace kiln::api {
namespace {

using nlohmann::json;

template <typename F>
std::string refusal(F parse) {
  try {
    parse();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "accepted";
}

TEST(SnapshotCreateBody, FieldsAndDefaults) {
  auto c = parse_snapshot_create({{"snapshot_path", "s"}, {"mem_file_path", "m"}});
  EXPECT_EQ(c.type, request::SnapshotType::kFull);
  EXPECT_EQ(c.snapshot_path, "s");
  EXPECT_EQ(c.mem_file_path, "m");
  c = parse_snapshot_create(
      {{"snapshot_path", "s"}, {"mem_file_path", "m"}, {"snapshot_type", "Diff"}});
  EXPECT_EQ(c.type, request::SnapshotType::kDiff);
  auto bad = [](const json& body) { return refusal([&] { parse_snapshot_create(body); }); };
  EXPECT_NE(bad({{"snapshot_path", "s"}}).find("mem_file_path"), std::string::npos);
  EXPECT_NE(bad({{"snapshot_path", "s"}, {"mem_file_path", "m"}, {"snapshot_type", "Half"}})
                .find("unknown variant `Half`"),
            std::string::npos);
  EXPECT_NE(bad({{"snapshot_path", "s"}, {"mem_file_path", "m"}, {"version", "1.0"}})
                .find("unknown field `version`"),
            std::string::npos);
  EXPECT_NE(bad({{"snapshot_path", "s"}, {"mem_file_path", "s"}}).find("must differ"),
            std::string::npos);
  EXPECT_NE(bad({{"snapshot_path", ""}, {"mem_file_path", "m"}}).find("snapshot_path"),
            std::string::npos);
}

TEST(SnapshotLoadBody, BackendsOverridesAndRefusals) {
  auto l = parse_snapshot_load(
      {{"snapshot_path", "s"},
       {"mem_backend", {{"backend_type", "File"}, {"backend_path", "m"}}},
       {"resume_vm", true},
       {"track_dirty_pages", true},
       {"clock_realtime", true},
       {"network_overrides", {{{"iface_id", "eth0"}, {"host_dev_name", "tap7"}}}},
       {"vsock_override", {{"uds_path", "/run/v.sock"}}},
       {"fs_overrides", {{{"fs_id", "fs0"}, {"path", "/srv/copy"}}}},
       {"huge_pages", "None"}});
  EXPECT_EQ(l.mem_file_path, "m");
  EXPECT_TRUE(l.resume_vm);
  EXPECT_TRUE(l.track_dirty_pages);
  EXPECT_TRUE(l.clock_realtime);
  ASSERT_EQ(l.network_overrides.size(), 1u);
  EXPECT_EQ(l.network_overrides[0].host_dev_name, "tap7");
  EXPECT_EQ(l.vsock_uds_path, "/run/v.sock");
  ASSERT_EQ(l.fs_overrides.size(), 1u);
  EXPECT_EQ(l.fs_overrides[0].path, "/srv/copy");
  EXPECT_EQ(l.huge_pages, HugePages::kNone);
  // The deprecated spellings.
  l = parse_snapshot_load(
      {{"snapshot_path", "s"}, {"mem_file_path", "m"}, {"enable_diff_snapshots", true}});
  EXPECT_EQ(l.mem_file_path, "m");
  EXPECT_TRUE(l.track_dirty_pages);
  EXPECT_FALSE(l.resume_vm);
  EXPECT_EQ(snapshot_load_deprecated_fields(
                {{"snapshot_path", "s"}, {"mem_file_path", "m"}, {"enable_diff_snapshots", true}})
                .size(),
            2u);

  auto bad = [](const json& body) { return refusal([&] { parse_snapshot_load(body); }); };
  const json backend = {{"backend_type", "File"}, {"backend_path", "m"}};
  EXPECT_NE(bad({{"snapshot_path", "s"}}).find("mem_backend"), std::string::npos);
  EXPECT_NE(bad({{"snapshot_path", "s"}, {"mem_file_path", "m"}, {"mem_backend", backend}})
                .find("cannot both"),
            std::string::npos);
  l = parse_snapshot_load(
      {{"snapshot_path", "s"},
       {"mem_backend", {{"backend_type", "Uffd"}, {"backend_path", "/u.sock"}}}});
  EXPECT_TRUE(l.uffd);
  EXPECT_EQ(l.mem_file_path, "/u.sock");
  EXPECT_NE(bad({{"snapshot_path", "s"},
                 {"mem_backend", {{"backend_type", "Disk"}, {"backend_path", "m"}}}})
                .find("unknown variant `Disk`"),
            std::string::npos);
  EXPECT_NE(bad({{"snapshot_path", "s"}, {"mem_backend", backend}, {"huge_pages", "2M"}})
                .find("huge_pages"),
            std::string::npos);
  EXPECT_NE(bad({{"snapshot_path", "s"},
                 {"mem_backend", backend},
                 {"network_overrides", {{{"iface_id", "eth0"}}}}})
                .find("host_dev_name"),
            std::string::npos);
  EXPECT_NE(
      bad({{"snapshot_path", "s"},
           {"mem_backend", backend},
           {"network_overrides", {{{"iface_id", "e"}, {"host_dev_name", std::string(16, 't')}}}}})
          .find("1 to 15 bytes"),
      std::string::npos);
  EXPECT_NE(
      bad({{"snapshot_path", "s"}, {"mem_backend", backend}, {"vsock_override", json::object()}})
          .find("uds_path"),
      std::string::npos);
  EXPECT_NE(bad({{"snapshot_path", "s"}, {"mem_backend", backend}, {"resume_vm", "yes"}})
                .find("resume_vm"),
            std::string::npos);
}

TEST(SnapshotConfigCodec, GivesBackTheConfiguration) {
  test::TempFile kernel("kernel"), disk(std::string(4096, '\0'));
  VmConfig c;
  c.vcpus = 2;
  c.memory_mib = 256;
  c.track_dirty_pages = true;
  c.kernel_path = kernel.path();
  c.cmdline = "console=hvc0 quiet";
  c.console = ConsoleMode::kVirtio;
  c.drives.push_back({disk.path(), true, "rootfs", true, CacheType::kWriteback});
  c.nets.push_back({"eth0", "tap0", MacAddress::parse("02:00:00:00:00:01"), uint16_t{1400}});
  c.vsock = VsockConfig{7, "/tmp/v.sock", ""};
  c.entropy = EntropyConfig{};
  FsConfig fs;
  fs.fs_id = "fs0";
  fs.tag = "share";
  fs.path = "/tmp";
  fs.read_only = true;
  c.fs.push_back(fs);
  const ConfigCodec codec = snapshot_config_codec();
  const VmConfig back = codec.decode(codec.encode(c), {});
  EXPECT_EQ(back.vcpus, 2u);
  EXPECT_EQ(back.memory_mib, 256u);
  EXPECT_TRUE(back.track_dirty_pages);
  EXPECT_EQ(back.kernel_path, c.kernel_path);
  EXPECT_EQ(back.cmdline, c.cmdline);
  EXPECT_EQ(back.console, ConsoleMode::kVirtio);
  ASSERT_EQ(back.drives.size(), 1u);
  EXPECT_EQ(back.drives[0].path, disk.path());
  EXPECT_TRUE(back.drives[0].read_only);
  EXPECT_TRUE(back.drives[0].is_root);
  EXPECT_EQ(back.drives[0].cache_type, CacheType::kWriteback);
  ASSERT_EQ(back.nets.size(), 1u);
  EXPECT_EQ(back.nets[0].host_dev_name, "tap0");
  EXPECT_EQ(back.nets[0].mtu, uint16_t{1400});
  ASSERT_TRUE(back.nets[0].guest_mac);
  ASSERT_TRUE(back.vsock);
  EXPECT_EQ(back.vsock->guest_cid, 7u);
  EXPECT_TRUE(back.entropy);
  ASSERT_EQ(back.fs.size(), 1u);
  EXPECT_EQ(back.fs[0].tag, "share");
  EXPECT_TRUE(back.fs[0].read_only);
  EXPECT_NE(refusal([&] { codec.decode("{", {}); }).find("not JSON"), std::string::npos);
  EXPECT_NE(refusal([&] { codec.decode("{}", {}); }).find("boot-source"), std::string::npos);
}

// A clone's paths replace the snapshot's before they are checked: the snapshot's vsock directory
// and shared directory are gone, the overrides name new ones.
TEST(SnapshotConfigCodec, AppliesTheLoadsOverridesBeforeCheckingPaths) {
  test::TempFile kernel("kernel");
  test::TempDir clone;
  VmConfig c;
  c.kernel_path = kernel.path();
  c.vsock = VsockConfig{3, "/nonexistent-kiln-dir/v.sock", ""};
  FsConfig fs;
  fs.fs_id = "root";
  fs.tag = "kiln-root";
  fs.path = "/nonexistent-kiln-dir/share";
  c.fs.push_back(fs);
  const ConfigCodec codec = snapshot_config_codec();
  const std::string text = codec.encode(c);
  EXPECT_NE(refusal([&] { codec.decode(text, {}); }).find("uds_path"), std::string::npos);
  request::LoadSnapshot load;
  load.vsock_uds_path = clone.path() + "/v.sock";
  load.fs_overrides.push_back({"root", clone.path()});
  const VmConfig back = codec.decode(text, load);
  ASSERT_TRUE(back.vsock);
  EXPECT_EQ(back.vsock->uds_path, clone.path() + "/v.sock");
  ASSERT_EQ(back.fs.size(), 1u);
  EXPECT_EQ(back.fs[0].path, clone.path());
  request::LoadSnapshot unknown = load;
  unknown.fs_overrides.push_back({"other", clone.path()});
  EXPECT_NE(refusal([&] {
              codec.decode(text, unknown);
            }).find("fs_overrides: the snapshot has no virtio-fs share \"other\""),
            std::string::npos);
  request::LoadSnapshot drive = load;
  drive.drive_overrides.push_back({"rootfs", "/x"});
  EXPECT_NE(refusal([&] { codec.decode(text, drive); }).find("the snapshot has no drive"),
            std::string::npos);
}

CliCommand cli(std::vector<const char*> args) {
  args.insert(args.begin(), "kiln");
  return parse_cli(static_cast<int>(args.size()), args.data());
}

TEST(SnapshotCommandLine, RestoreFlagsBecomeALoad) {
  const CliCommand c =
      cli({"--restore", "s.state", "--mem", "s.mem", "--paused", "--drive-override",
           "rootfs=/tmp/a.ext4", "--fs-override", "fs0=/srv/copy", "--net-override", "eth0=tap1",
           "--vsock-override", "/tmp/v.sock", "--clock-realtime", "--track-dirty-pages"});
  ASSERT_EQ(c.action, CliCommand::Action::kRun);
  ASSERT_TRUE(c.restore);
  EXPECT_EQ(c.restore->snapshot_path, "s.state");
  EXPECT_EQ(c.restore->mem_file_path, "s.mem");
  EXPECT_FALSE(c.restore->resume_vm);
  EXPECT_TRUE(c.restore->clock_realtime);
  EXPECT_TRUE(c.restore->track_dirty_pages);
  ASSERT_EQ(c.restore->drive_overrides.size(), 1u);
  EXPECT_EQ(c.restore->drive_overrides[0].drive_id, "rootfs");
  EXPECT_EQ(c.restore->drive_overrides[0].path_on_host, "/tmp/a.ext4");
  ASSERT_EQ(c.restore->fs_overrides.size(), 1u);
  EXPECT_EQ(c.restore->fs_overrides[0].fs_id, "fs0");
  EXPECT_EQ(c.restore->fs_overrides[0].path, "/srv/copy");
  ASSERT_EQ(c.restore->network_overrides.size(), 1u);
  EXPECT_EQ(c.restore->network_overrides[0].host_dev_name, "tap1");
  EXPECT_EQ(c.restore->vsock_uds_path, "/tmp/v.sock");
  EXPECT_TRUE(cli({"--restore", "s", "--mem", "m"}).restore->resume_vm);
  const CliCommand u = cli({"--restore", "s", "--uffd", "/run/u.sock"});
  ASSERT_TRUE(u.restore);
  EXPECT_TRUE(u.restore->uffd);
  EXPECT_EQ(u.restore->mem_file_path, "/run/u.sock");

  for (const auto& bad : std::vector<std::vector<const char*>>{
           {"--restore", "s"},
           {"--mem", "m"},
           {"--restore", "s", "--mem", "m", "--uffd", "u"},
           {"--restore", "s", "--mem", "m", "--drive-override", "rootfs"},
           {"--restore", "s", "--mem", "m", "--net-override", "eth0=a-tap-name-too-long"},
           {"--restore", "s", "--mem", "m", "--config-file", "vm.json"}}) {
    const CliCommand r = cli(bad);
    EXPECT_EQ(r.action, CliCommand::Action::kExit) << bad.size();
    EXPECT_EQ(r.exit_code, kExitUsage);
  }
}

TEST(SnapshotCommandLine, CreateAndRebase) {
  CliCommand c = cli({"snapshot", "create", "--api-sock", "a.sock", "--snapshot-path", "s",
                      "--mem-file-path", "m", "--type", "Diff", "--resume"});
  ASSERT_EQ(c.action, CliCommand::Action::kSnapshotCreate);
  EXPECT_EQ(c.snapshot_create.api_socket, "a.sock");
  EXPECT_EQ(c.snapshot_create.create.type, request::SnapshotType::kDiff);
  EXPECT_EQ(c.snapshot_create.create.snapshot_path, "s");
  EXPECT_TRUE(c.snapshot_create.resume);
  c = cli({"snapshot", "rebase", "--base-file", "b", "--diff-file", "d"});
  ASSERT_EQ(c.action, CliCommand::Action::kRebase);
  EXPECT_EQ(c.rebase_base_file, "b");
  EXPECT_EQ(c.rebase_diff_file, "d");
  EXPECT_EQ(cli({"snapshot", "create", "--api-sock", "a"}).exit_code, kExitUsage);
  EXPECT_EQ(cli({"snapshot", "create", "--api-sock", "a", "--snapshot-path", "s", "--mem-file-path",
                 "m", "--type", "Half"})
                .exit_code,
            kExitUsage);
  EXPECT_EQ(cli({"snapshot"}).exit_code, kExitUsage);
}

}  // namespace
}  // namespace kiln::api
