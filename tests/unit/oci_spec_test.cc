// kiln-oci's reading of a bundle's config.json (oci/spec.h): what reaches the sandbox, and
// the field each bad value is refused with.
#include "oci/spec.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/error.h"

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
  EXPECT_EQ(b.run.planned->vm_args.back().substr(b.run.planned->vm_args.back().size() - 3), ",ro");
  EXPECT_EQ(b.run.cpus, 4u);
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
      {"not json", "not a JSON object"},
  };
  for (const auto& [cfg, want] : cases) {
    std::string e = error_of(cfg);
    EXPECT_NE(e.find(want), std::string::npos) << cfg << "\n -> " << e;
  }
}

}  // namespace
}  // namespace kiln::oci
