// `kiln jail` as root: the jailed kiln serves its API from <base>/kiln/<id>/root as the given
// user, in its own mount namespace, with only its device nodes, no inherited fd, an empty
// environment, its resource limits and its cgroup; daemonized into a new PID namespace it is
// PID 1 there; a guest boots in the jail; bad flags are refused naming them, before anything is
// made on disk.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/e2e/api_client.h"
#include "tests/e2e/kiln_process.h"

namespace kiln::e2e {
namespace {

constexpr uid_t kNobody = 65534;

std::string slurp(const std::string& path) {
  return test::read_whole_file(path);
}

// The value of `key:` in /proc/PID/status.
std::string status_field(pid_t pid, const std::string& key) {
  std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + ":", 0) == 0) return line.substr(key.size() + 2);
  return "";
}

// The unified (cgroup v2) hierarchy's mount point, or "".
std::string cgroup2_root() {
  std::istringstream in(slurp("/proc/self/mounts"));
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string src, dir, type;
    if (f >> src >> dir >> type && type == "cgroup2") return dir;
  }
  return "";
}

class JailTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "kiln jail needs root";
    base_ = temp_dir() + "/kiln-jail-" + std::to_string(::getpid());
    id_ = "t" + std::to_string(::getpid()) + "-" +
          std::to_string(::testing::UnitTest::GetInstance()->random_seed() & 0xfff);
    exec_name_ = kiln_binary().substr(kiln_binary().rfind('/') + 1);
    root_ = base_ + "/" + exec_name_ + "/" + id_ + "/root";
  }
  void TearDown() override {
    if (jailed_ > 0) ::kill(jailed_, SIGKILL);
    vm_.reset();
    std::error_code ec;
    std::filesystem::remove_all(base_, ec);
    if (!cgroup_dir_.empty()) {
      ::rmdir(cgroup_dir_.c_str());
      ::rmdir(cgroup_dir_.substr(0, cgroup_dir_.rfind('/')).c_str());
    }
  }
  // `kiln jail` for this test's id and base (or `base`), then `extra`, `--` and `kiln_args`.
  std::vector<std::string> jail_args(const std::vector<std::string>& extra,
                                     const std::vector<std::string>& kiln_args,
                                     const std::string& base = "") {
    std::vector<std::string> a = {"jail",
                                  "--id",
                                  id_,
                                  "--exec-file",
                                  kiln_binary(),
                                  "--uid",
                                  "65534",
                                  "--gid",
                                  "65534",
                                  "--chroot-base-dir",
                                  base.empty() ? base_ : base};
    a.insert(a.end(), extra.begin(), extra.end());
    a.push_back("--");
    a.insert(a.end(), kiln_args.begin(), kiln_args.end());
    return a;
  }
  // Skips where the jail cannot hold this kiln (a sanitizer build is dynamically linked).
  void skip_if_dynamic() {
    const KilnRun probe = run_kiln(jail_args({}, {"--version"}));
    if (probe.err.find("dynamically linked") != std::string::npos)
      GTEST_SKIP() << "this kiln is dynamically linked (a sanitizer build): " << probe.err;
    ASSERT_EQ(probe.exit_code, 0) << describe(probe);
    ASSERT_NE(probe.out.find("kiln"), std::string::npos) << describe(probe);
  }

  std::string base_, id_, exec_name_, root_, cgroup_dir_;
  std::unique_ptr<KilnProcess> vm_;
  pid_t jailed_ = -1;
};

TEST_F(JailTest, JailedKilnServesItsApiAsTheUserInItsOwnRoot) {
  skip_if_dynamic();
  if (IsSkipped() || HasFatalFailure()) return;
  // A descriptor the jail must not pass on.
  const std::string leak_path = base_ + "-leak";
  const int leaked = ::open(leak_path.c_str(), O_RDWR | O_CREAT, 0600);  // no O_CLOEXEC
  ASSERT_GE(leaked, 0);
  std::vector<std::string> extra = {"--resource-limit", "no-file=512", "--resource-limit",
                                    "fsize=1048576"};
  const std::string unified = cgroup2_root();
  if (!unified.empty()) {
    extra.insert(extra.end(), {"--cgroup-version", "2", "--parent-cgroup", "kiln-jail-test",
                               "--cgroup", "cgroup.max.depth=3"});
    cgroup_dir_ = unified + "/kiln-jail-test/" + id_;
  }
  vm_ = std::make_unique<KilnProcess>(jail_args(extra, {"--api-sock", "/api.sock"}));
  ::close(leaked);
  ::unlink(leak_path.c_str());
  ASSERT_TRUE(wait_for_socket(root_ + "/api.sock", 30)) << vm_->err();
  EXPECT_EQ(api_request(root_ + "/api.sock", "GET", "/").status, 200);
  const pid_t pid = vm_->pid();  // the jail execs in place
  EXPECT_EQ(status_field(pid, "Uid"), "65534\t65534\t65534\t65534");
  EXPECT_EQ(status_field(pid, "Gid"), "65534\t65534\t65534\t65534");
  EXPECT_EQ(status_field(pid, "Groups").find_first_not_of(" \t"), std::string::npos)
      << "supplementary groups: " << status_field(pid, "Groups");
  EXPECT_EQ(status_field(pid, "NoNewPrivs"), "1");
  struct stat mine {
  }, its{};
  ASSERT_EQ(::stat("/proc/self/ns/mnt", &mine), 0);
  ASSERT_EQ(::stat(("/proc/" + std::to_string(pid) + "/ns/mnt").c_str(), &its), 0);
  EXPECT_NE(mine.st_ino, its.st_ino) << "the same mount namespace";
  // Its root holds the executable, its socket and the device nodes; nothing else of the host.
  const std::string proc_root = "/proc/" + std::to_string(pid) + "/root";
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(proc_root))
    names.insert(e.path().filename());
  EXPECT_EQ(names, (std::set<std::string>{exec_name_, "api.sock", "dev"}));
  struct stat host_kvm {
  }, jail_kvm{};
  if (::stat("/dev/kvm", &host_kvm) == 0) {
    ASSERT_EQ(::stat((proc_root + "/dev/kvm").c_str(), &jail_kvm), 0);
    EXPECT_TRUE(S_ISCHR(jail_kvm.st_mode));
    EXPECT_EQ(jail_kvm.st_rdev, host_kvm.st_rdev);
    EXPECT_EQ(jail_kvm.st_uid, kNobody);
    EXPECT_EQ(jail_kvm.st_mode & 0777, 0600u);
  }
  struct stat root_st {};
  ASSERT_EQ(::stat(proc_root.c_str(), &root_st), 0);
  EXPECT_EQ(root_st.st_uid, kNobody);
  // No inherited descriptor; an empty environment; the limits.
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    std::error_code ec;
    EXPECT_NE(std::filesystem::read_symlink(e.path(), ec).string(), leak_path);
  }
  EXPECT_EQ(slurp("/proc/" + std::to_string(pid) + "/environ"), "");
  const std::string limits = slurp("/proc/" + std::to_string(pid) + "/limits");
  EXPECT_NE(limits.find("Max open files            512                  512"), std::string::npos)
      << limits;
  EXPECT_NE(limits.find("Max file size             1048576              1048576"),
            std::string::npos)
      << limits;
  if (!cgroup_dir_.empty()) {
    EXPECT_NE(slurp("/proc/" + std::to_string(pid) + "/cgroup").find("0::/kiln-jail-test/" + id_),
              std::string::npos);
    EXPECT_EQ(slurp(cgroup_dir_ + "/cgroup.max.depth"), "3\n");
  }
  vm_->signal(SIGTERM);
  EXPECT_GE(vm_->wait(20), 0);
}

TEST_F(JailTest, DaemonizedInANewPidNamespaceItIsPidOne) {
  skip_if_dynamic();
  if (IsSkipped() || HasFatalFailure()) return;
  const KilnRun r =
      run_kiln(jail_args({"--daemonize", "--new-pid-ns"}, {"--api-sock", "/api.sock"}));
  ASSERT_EQ(r.exit_code, 0) << describe(r);  // the jailer leaves; the jailed kiln goes on
  ASSERT_TRUE(wait_for_socket(root_ + "/api.sock", 30));
  const std::string pid_text = slurp(root_ + "/" + exec_name_ + ".pid");
  ASSERT_FALSE(pid_text.empty());
  jailed_ = std::stoi(pid_text);
  EXPECT_EQ(status_field(jailed_, "NSpid"), std::to_string(jailed_) + "\t1");
  std::error_code ec;
  EXPECT_EQ(std::filesystem::read_symlink(
                "/proc/" + pid_text.substr(0, pid_text.size() - 1) + "/fd/1", ec)
                .string(),
            "/dev/null");
  EXPECT_EQ(api_request(root_ + "/api.sock", "GET", "/").status, 200);
}

TEST_F(JailTest, AReusedJailFollowsNothingAnEarlierVmLeftInIt) {
  skip_if_dynamic();  // makes the jail once
  if (IsSkipped() || HasFatalFailure()) return;
  // What a VM running as the jail's user could have left in its root for the next jailer run.
  const std::string victim = base_ + "/victim";
  std::ofstream(victim) << "victim";
  ASSERT_EQ(::symlink(victim.c_str(), (root_ + "/" + exec_name_ + ".tmp").c_str()), 0);
  ASSERT_EQ(::symlink(base_.c_str(), (root_ + "/old_root").c_str()), 0);
  const KilnRun r = run_kiln(jail_args({}, {"--version"}));
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_TRUE(slurp(victim) == "victim") << "the file the symlink named was written through";
}

TEST_F(JailTest, ItJoinsTheNetworkNamespaceGiven) {
  skip_if_dynamic();
  if (IsSkipped() || HasFatalFailure()) return;
  const std::string ns = "kiln-jail-" + id_;
  if (std::system(("ip netns add " + ns + " 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "cannot make a network namespace here (ip netns add)";
  const std::string ns_path = "/var/run/netns/" + ns;
  vm_ = std::make_unique<KilnProcess>(jail_args({"--netns", ns_path}, {"--api-sock", "/api.sock"}));
  const bool up = wait_for_socket(root_ + "/api.sock", 30);
  struct stat want {
  }, its{};
  const bool stated =
      ::stat(ns_path.c_str(), &want) == 0 &&
      ::stat(("/proc/" + std::to_string(vm_->pid()) + "/ns/net").c_str(), &its) == 0;
  vm_->signal(SIGTERM);
  vm_->wait(20);
  std::system(("ip netns del " + ns).c_str());
  ASSERT_TRUE(up) << vm_->err();
  ASSERT_TRUE(stated);
  EXPECT_EQ(its.st_ino, want.st_ino) << "not in " << ns_path;
}

TEST_F(JailTest, AGuestBootsInTheJail) {
  KILN_REQUIRE_KVM();
  skip_if_dynamic();
  if (IsSkipped() || HasFatalFailure()) return;
  // What the VM needs is put in the jail beforehand (an existing jail directory is used).
  std::filesystem::copy_file(guest_path("hello"), root_ + "/hello.elf",
                             std::filesystem::copy_options::overwrite_existing);
  ASSERT_EQ(::chown((root_ + "/hello.elf").c_str(), kNobody, kNobody), 0);
  const KilnRun r = run_kiln(jail_args({}, {"run", "--kernel", "/hello.elf"}));
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.out.find("Hello from a Kiln test guest"), std::string::npos) << describe(r);
}

TEST_F(JailTest, BadFlagsAreRefusedNamingThemAndNothingIsMade) {
  auto refused = [&](std::vector<std::string> args, const std::string& phrase) {
    const KilnRun r = run_kiln(args);
    EXPECT_EQ(r.exit_code, 2) << describe(r);
    EXPECT_NE(r.err.find(phrase), std::string::npos) << describe(r);
  };
  auto with = [&](const std::vector<std::string>& extra) { return jail_args(extra, {}); };
  std::vector<std::string> bad_id = jail_args({}, {});
  bad_id[2] = "no/slash";
  refused(bad_id, "--id 'no/slash'");
  std::vector<std::string> long_id = jail_args({}, {});
  long_id[2] = std::string(65, 'a');
  refused(long_id, "1 to 64 characters");
  std::vector<std::string> bad_uid = jail_args({}, {});
  bad_uid[6] = "nobody";
  refused(bad_uid, "--uid 'nobody'");
  std::vector<std::string> missing = jail_args({}, {});
  missing[4] = base_ + "/missing-kiln";
  refused(missing, "--exec-file " + base_ + "/missing-kiln");
  refused(with({"--cgroup", "cpu.max"}), "--cgroup cpu.max: expected FILE=VALUE");
  refused(with({"--cgroup", "../x=1"}), "<controller>.<name>");
  refused(with({"--cgroup-version", "3"}), "--cgroup-version '3'");
  refused(with({"--parent-cgroup", "a/../b"}), "--parent-cgroup 'a/../b'");
  refused(with({"--parent-cgroup", "kiln"}), "--parent-cgroup with --cgroup-version 1 needs");
  refused(with({"--resource-limit", "cpu=1"}), "--resource-limit cpu=1");
  refused(with({"--resource-limit", "no-file=2"}), "no-file must be 16 to 1048576");
  refused(jail_args(std::vector<std::string>{}, std::vector<std::string>{}, "relative"),
          "must be an absolute path");
  // An executable that needs the dynamic loader cannot run in the empty jail.
  std::vector<std::string> dynamic = jail_args({}, {});
  dynamic[4] = "/bin/sh";
  refused(dynamic, "dynamically linked");
  EXPECT_FALSE(std::filesystem::exists(base_)) << "a refused jail made " << base_;
}

}  // namespace
}  // namespace kiln::e2e
