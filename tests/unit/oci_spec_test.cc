// kiln-oci's reading of a bundle's config.json (oci/spec.h): what reaches the sandbox, and
// the field each bad value is refused with.
#include "oci/spec.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "oci/mount_points.h"

namespace kiln::oci {
namespace {

namespace fs = std::filesystem;

class OciSpec : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "kiln-oci-XXXXXX").string();
    ASSERT_TRUE(mkdtemp(t.data()));
    dir_ = t;
    fs::create_directories(dir_ / "rootfs");
    std::ofstream(dir_ / "hosts") << "127.0.0.1 localhost\n";
    fs::create_directories(dir_ / "data");
  }
  void TearDown() override { fs::remove_all(dir_); }

  Bundle load(const std::string& config) {
    std::ofstream(dir_ / "config.json") << config;
    sandbox::RunOptions d;
    d.cpus = 1;
    d.memory = 256;
    return load_bundle(dir_.string(), d);
  }
  std::string error_of(const std::string& config) {
    try {
      load(config);
    } catch (const UsageError& e) {
      return e.what();
    }
    return "accepted";
  }
  // A config with `process` and extra top-level members spliced in.
  std::string config(const std::string& process, const std::string& extra = "") {
    return R"({"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": )" + process +
           (extra.empty() ? "" : ", " + extra) + "}";
  }
  fs::path dir_;
};

TEST_F(OciSpec, ProcessMountsAndResourcesReachTheSandbox) {
  Bundle b = load(config(
      R"({"args": ["sh", "-c", "x"], "env": ["A=1"], "cwd": "/srv",
          "user": {"uid": 1000, "gid": 100, "umask": 63, "additionalGids": [10, 20]},
          "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}],
          "noNewPrivileges": true})",
      R"("hostname": "box", "annotations": {"a": "b"},
         "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                    {"destination": "/etc/hosts", "type": "bind", "source": ")" +
          (dir_ / "hosts").string() + R"(", "options": ["rbind"]},
                    {"destination": "/data", "type": "bind", "source": ")" +
          (dir_ / "data").string() + R"(", "options": ["bind", "ro"]}],
         "linux": {"resources": {"memory": {"limit": 268435456},
                                 "cpu": {"quota": 150000, "period": 100000}}})"));
  ASSERT_TRUE(b.run.planned);
  const agent::Start& s = b.run.planned->start;
  EXPECT_EQ(s.argv, (std::vector<std::string>{"sh", "-c", "x"}));
  EXPECT_EQ(s.env, (std::vector<std::string>{"A=1"}));
  EXPECT_EQ(s.cwd, "/srv");
  EXPECT_TRUE(s.create_cwd);
  EXPECT_EQ(s.uid, 1000u);
  EXPECT_EQ(s.gid, 100u);
  EXPECT_EQ(s.umask, 63u);
  EXPECT_EQ(s.groups, (std::vector<uint32_t>{10, 20}));
  ASSERT_EQ(s.rlimits.size(), 1u);
  EXPECT_EQ(s.rlimits[0].resource, "nofile");
  EXPECT_EQ(s.rlimits[0].soft, 512u);
  EXPECT_TRUE(s.no_new_privileges);
  EXPECT_EQ(b.run.hostname, "box");
  EXPECT_EQ(b.annotations.at("a"), "b");
  EXPECT_EQ(b.run.timings_file, "");
  ASSERT_EQ(b.run.files.size(), 1u);
  EXPECT_EQ(b.run.files[0].guest, "/etc/hosts");
  ASSERT_EQ(b.run.volumes.size(), 1u);
  EXPECT_EQ(b.run.volumes[0].guest, "/data");
  EXPECT_TRUE(b.run.volumes[0].read_only);
  EXPECT_EQ(b.run.memory, 256u + kMemoryOverheadMiB);
  EXPECT_EQ(b.run.cpus, 2u);  // 1.5 CPUs of quota, rounded up
  EXPECT_EQ(b.rootfs, (dir_ / "rootfs").string());
  EXPECT_EQ(b.run.planned->cmdline.find("kiln.rootflags=ro"), std::string::npos);
}

TEST_F(OciSpec, ReadOnlyRootAndCpuset) {
  Bundle b = load(R"({"ociVersion": "1.0.2", "root": {"path": "rootfs", "readonly": true},
                      "process": {"args": ["true"], "cwd": "/"},
                      "linux": {"resources": {"cpu": {"cpus": "0-2,5"}}}})");
  EXPECT_NE(b.run.planned->cmdline.find("kiln.rootflags=ro"), std::string::npos);
  ASSERT_TRUE(b.run.planned->root_share);
  EXPECT_TRUE(b.run.planned->root_share->read_only);
  EXPECT_EQ(b.run.cpus, 4u);
}

// podman --read-only --tmpfs /scratch:size=1m: the spec's tmpfs mounts (the guest's own /run
// and /tmp among them) go to the agent with their options, propagation options dropped.
TEST_F(OciSpec, TmpfsMountsKeepTheirOptions) {
  Bundle b = load(config(R"({"args": ["true"], "cwd": "/"})",
                         R"("mounts": [
      {"destination": "/dev", "type": "tmpfs", "options": ["nosuid", "mode=755"]},
      {"destination": "/run", "type": "tmpfs", "options": ["rw", "rprivate", "nosuid", "nodev",
                                                           "tmpcopyup"]},
      {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
       "options": ["rw", "size=1m", "mode=1777", "noexec"]},
      {"destination": "/var/tmp", "type": "tmpfs"}])"));
  EXPECT_EQ(b.run.tmpfs,
            (std::vector<std::string>{"/run:rw,nosuid,nodev,tmpcopyup",
                                      "/scratch:rw,size=1m,mode=1777,noexec", "/var/tmp"}));
}

// Mount points are made in the root on the host (the guest cannot in a read-only root): the
// directories and files of shares and tmpfs, not what lies under the guest's own file systems,
// and never outside the root through a symbolic link.
TEST_F(OciSpec, MountPointsAreMadeInsideTheRoot) {
  fs::create_directories(dir_ / "outside");
  fs::create_symlink(dir_ / "outside", dir_ / "rootfs" / "escape");
  sandbox::RunOptions run;
  run.tmpfs = {"/var/tmp:size=1m"};
  run.volumes = {{(dir_ / "data").string(), "/srv/data", false}};
  run.files = {{(dir_ / "hosts").string(), "/etc/hosts"},
               {(dir_ / "hosts").string(), "/run/.containerenv"},
               {(dir_ / "hosts").string(), "/var/tmp/in-tmpfs"}};
  make_mount_points((dir_ / "rootfs").string(), run);
  fs::path r = dir_ / "rootfs";
  for (const char* d : {"dev", "proc", "sys", "run", "tmp", "var/tmp", "srv/data"})
    EXPECT_TRUE(fs::is_directory(r / d)) << d;
  EXPECT_TRUE(fs::is_regular_file(r / "etc" / "hosts"));
  EXPECT_EQ(fs::file_size(r / "etc" / "hosts"), 0u);
  EXPECT_FALSE(fs::exists(r / "run" / ".containerenv"));
  EXPECT_FALSE(fs::exists(r / "var" / "tmp" / "in-tmpfs"));

  // A link to an absolute host path resolves inside the root (where it leads nowhere), and a
  // file where a directory must be: refused, naming the mount point, nothing made outside.
  std::ofstream(r / "srv" / "file");
  const std::pair<std::string, std::string> cases[] = {
      {"/escape/t", "the mount point /escape/t: open /escape/: No such file"},
      {"/srv/file/x", "the mount point /srv/file/x: /srv/file is not a directory"}};
  for (const auto& [target, want] : cases) {
    run = {};
    run.volumes = {{(dir_ / "data").string(), target, false}};
    try {
      make_mount_points(r.string(), run);
      ADD_FAILURE() << target << " accepted";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(dir_ / "outside" / "t"));
}

// io.kiln.vcpus and io.kiln.memory_mib size the microVM over the defaults; the engine's
// linux.resources win over them.
TEST_F(OciSpec, KilnAnnotationsSizeTheVm) {
  Bundle b = load(config(R"({"args": ["true"], "cwd": "/"})",
                         R"("annotations": {"io.kiln.vcpus": "3", "io.kiln.memory_mib": "512",
                                            "org.other": "x"})"));
  EXPECT_EQ(b.run.cpus, 3u);
  EXPECT_EQ(b.run.memory, 512u);
  b = load(config(R"({"args": ["true"], "cwd": "/"})",
                  R"("annotations": {"io.kiln.vcpus": "3", "io.kiln.memory_mib": "512"},
                     "linux": {"resources": {"memory": {"limit": 134217728},
                                             "cpu": {"quota": 100000, "period": 100000}}})"));
  EXPECT_EQ(b.run.cpus, 1u);
  EXPECT_EQ(b.run.memory, 128u + kMemoryOverheadMiB);
}

TEST_F(OciSpec, BadValuesNameTheirField) {
  const std::pair<std::string, std::string> cases[] = {
      {"{}", "ociVersion: is required"},
      {R"({"ociVersion": "2.0", "root": {"path": "rootfs"}})", "ociVersion"},
      {R"({"ociVersion": "1.0.2", "process": {"args": ["x"], "cwd": "/"}})", "root: is required"},
      {R"({"ociVersion": "1.0.2", "root": {"path": "nope"}, "process": {"args": ["x"], "cwd": "/"}})",
       "root.path"},
      {config(R"({"args": [], "cwd": "/"})"), "process.args"},
      {config(R"({"args": ["x"], "cwd": "rel"})"), "process.cwd"},
      {config(R"({"args": ["x"], "cwd": "/", "env": ["NOEQUALS"]})"), "process.env"},
      {config(R"({"args": ["x"], "cwd": "/", "user": {"uid": -1}})"), "process.user.uid"},
      {config(R"({"args": ["x"], "cwd": "/", "user": {"umask": 4096}})"), "process.user.umask"},
      {config(
           R"({"args": ["x"], "cwd": "/", "rlimits": [{"type": "NOFILE", "soft": 1, "hard": 1}]})"),
       "process.rlimits[].type"},
      {config(
           R"({"args": ["x"], "cwd": "/", "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 9, "hard": 1}]})"),
       "soft is above hard"},
      {config(R"({"args": ["x"], "cwd": "/", "terminal": "yes"})"), "process.terminal"},
      {config(R"({"args": ["x"], "cwd": "/"})",
              R"("mounts": [{"destination": "/x", "type": "nfs"}])"),
       "mounts[0]: a nfs mount at /x is not supported"},
      {config(R"({"args": ["x"], "cwd": "/"})",
              R"("mounts": [{"destination": "/x", "type": "bind", "source": "/no/such"}])"),
       "mounts[0].source"},
      {config(R"({"args": ["x"], "cwd": "/"})",
              R"("hooks": {"prestart": [{"path": "/bin/true"}]})"),
       "hooks.prestart"},
      {config(R"({"args": ["x"], "cwd": "/"})", R"("hostname": "a b")"), "hostname"},
      {config(R"({"args": ["x"], "cwd": "/"})",
              R"("linux": {"resources": {"memory": {"limit": 1024}}})"),
       "linux.resources.memory.limit"},
      {config(R"({"args": ["x"], "cwd": "/"})",
              R"("linux": {"resources": {"cpu": {"cpus": "a-b"}}})"),
       "linux.resources.cpu.cpus"},
      {config(R"({"args": ["x"], "cwd": "/"})",
              R"("mounts": [{"destination": "/t", "type": "tmpfs", "options": ["size=lots"]}])"),
       "mounts[0]: tmpfs '/t:size=lots': a bad value in 'size=lots'"},
      {config(R"({"args": ["x"], "cwd": "/"})",
              R"("mounts": [{"destination": "/t", "type": "tmpfs", "options": ["huge=always"]}])"),
       "unknown option 'huge=always'"},
      {config(R"({"args": ["x"], "cwd": "/"})",
              R"("mounts": [{"destination": "/t", "type": "tmpfs", "options": "size=1m"}])"),
       "mounts[0].options: must be an array of strings"},
      {config(R"({"args": ["x"], "cwd": "/"})", R"("annotations": {"io.kiln.timings": "t.json"})"),
       "annotations.io.kiln.timings: must be an absolute path"},
      {config(R"({"args": ["x"], "cwd": "/"})", R"("annotations": {"io.kiln.vcpus": "0"})"),
       "annotations.io.kiln.vcpus: '0' is not a vCPU count from 1 to 254"},
      {config(R"({"args": ["x"], "cwd": "/"})", R"("annotations": {"io.kiln.memory_mib": "1g"})"),
       "annotations.io.kiln.memory_mib: '1g' is not a guest memory size"},
      {config(R"({"args": ["x"], "cwd": "/"})", R"("annotations": {"io.kiln.vcpu": "2"})"),
       "annotations.io.kiln.vcpu: unknown (known: io.kiln.timings"},
      {"not json", "not a JSON object"},
      {config(R"({"args": ["x"], "cwd": "/"})",
              "\n\"x\": " + std::string(65, '[') + std::string(65, ']')),
       "config.json:2: nested more than 64 levels"},
  };
  for (const auto& [cfg, want] : cases) {
    std::string e = error_of(cfg);
    EXPECT_NE(e.find(want), std::string::npos) << cfg << "\n -> " << e;
  }
}

TEST_F(OciSpec, AProcessFileIsReadAndCheckedAlone) {
  std::ofstream(dir_ / "process.json") << R"({"args": ["sh"], "cwd": "/w", "env": ["A=1"]})";
  agent::Start s = load_process((dir_ / "process.json").string());
  EXPECT_EQ(s.argv, std::vector<std::string>{"sh"});
  EXPECT_EQ(s.cwd, "/w");
  std::ofstream(dir_ / "bad.json") << R"({"args": ["sh"], "cwd": "w"})";
  try {
    load_process((dir_ / "bad.json").string());
    FAIL() << "accepted";
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()),
              (dir_ / "bad.json").string() + ": process.cwd: must be an absolute path");
  }
  EXPECT_THROW(load_process((dir_ / "missing.json").string()), UsageError);
  fs::remove(dir_ / "config.json");
  EXPECT_THROW(load_bundle(dir_.string(), sandbox::RunOptions{}), UsageError);
}

TEST(OciUpdate, TheSizeItHasIsAcceptedAnyOtherChangeRefused) {
  sandbox::RunOptions now;
  now.cpus = 2;
  now.memory = 256 + kMemoryOverheadMiB;
  EXPECT_EQ(resources_update("{}", now).memory, now.memory);
  EXPECT_EQ(resources_update(R"({"memory": {"limit": 268435456}, "cpu": {"quota": 200000,
      "period": 100000}, "pids": null})",
                             now)
                .cpus,
            2u);
  auto error_of = [&](const std::string& text) {
    try {
      resources_update(text, now);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(error_of(R"({"memory": {"limit": 536870912}})"),
            "--resources: linux.resources.memory.limit: a running microVM's memory cannot "
            "change (it has 320 MiB of guest RAM): create the container again");
  EXPECT_EQ(error_of(R"({"cpu": {"cpus": "0-3"}})"),
            "--resources: linux.resources.cpu: a running microVM's vCPU count cannot change (it "
            "has 2): create the container again");
  EXPECT_NE(error_of(R"({"pids": {"limit": 100}})")
                .find("linux.resources.pids: kiln-oci applies no host cgroup limits"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"memory": {"limit": 268435456, "swap": 1}})")
                .find("linux.resources.memory.swap:"),
            std::string::npos);
  EXPECT_EQ(error_of(R"({"memory": {"limit": 1024}})"),
            "--resources: linux.resources.memory.limit: must be 32 MiB to 64 GiB for a microVM");
  EXPECT_EQ(error_of("[1]"), "--resources: not a JSON object");
}

}  // namespace
}  // namespace kiln::oci
