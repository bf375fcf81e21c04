// Snapshots end to end: the snapshot test guest (tests/guests/snapshot.c: a memory pattern, a
// running PIT, a line counter) is paused mid-run, snapshotted over the API and killed; a new
// `kiln --restore` process continues it where it was. Diff snapshots merged onto their Full
// base give the same memory as a Full one; bad files are refused before anything runs.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <regex>

#include "base/snapshot/memory_file.h"
#include "base/unique_fd.h"
#include "tests/e2e/api_client.h"
#include "tests/e2e/kiln_process.h"

namespace kiln::e2e {
namespace {

using nlohmann::json;

std::string read_file(const std::string& path) {
  return test::read_whole_file(path);
}

// The `SNAP n=<seq> ticks=<ticks>` lines of `out`, in order.
std::vector<std::pair<int, long>> lines_of(const std::string& out) {
  std::vector<std::pair<int, long>> lines;
  const std::regex line("SNAP n=([0-9]+) ticks=([0-9]+)");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), line); it != std::sregex_iterator();
       ++it)
    lines.emplace_back(std::stoi((*it)[1]), std::stol((*it)[2]));
  return lines;
}

class SnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_dir() + "/kiln-snap-" + std::to_string(::getpid()) + "-" +
           std::to_string(reinterpret_cast<uintptr_t>(this) & 0xffff);
    ::mkdir(dir_.c_str(), 0700);
  }
  void TearDown() override {
    if (vm_) {
      vm_->signal(SIGKILL);
      vm_->wait(10);
    }
    std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

  // Boots the snapshot guest over the API and waits for line `seq`.
  void boot(bool track_dirty_pages, int seq) {
    socket_ = temp_socket_path("kiln-snap");
    vm_ = std::make_unique<KilnProcess>(std::vector<std::string>{"--api-sock", socket_});
    ASSERT_TRUE(wait_for_socket(socket_, 20)) << vm_->err();
    put("/boot-source", {{"kernel_image_path", guest_path("snapshot")}});
    put("/machine-config",
        {{"vcpu_count", 1}, {"mem_size_mib", 64}, {"track_dirty_pages", track_dirty_pages}});
    put("/actions", {{"action_type", "InstanceStart"}});
    ASSERT_TRUE(vm_->wait_for_output("SNAP n=" + std::to_string(seq) + " ", 120))
        << vm_->out() << vm_->err();
  }
  ApiResponse call(const std::string& method, const std::string& p, const json& body) {
    return api_request(socket_, method, p, body.dump());
  }
  void put(const std::string& p, const json& body, int status = 204) {
    const ApiResponse r = call("PUT", p, body);
    ASSERT_EQ(r.status, status) << p << ": " << r.raw_body << "\n" << vm_->err();
  }
  void pause() { ASSERT_EQ(call("PATCH", "/vm", {{"state", "Paused"}}).status, 204); }
  void resume() { ASSERT_EQ(call("PATCH", "/vm", {{"state", "Resumed"}}).status, 204); }
  void snapshot(const std::string& name, const char* type = "Full") {
    put("/snapshot/create", {{"snapshot_type", type},
                             {"snapshot_path", path(name + ".state")},
                             {"mem_file_path", path(name + ".mem")}});
  }
  void kill_vm() {
    vm_->signal(SIGKILL);
    vm_->wait(10);
    vm_.reset();
  }
  // `kiln --restore` from `state` and `mem`; `before` is what the guest printed before the
  // snapshot. The two outputs together must be one run: each line once, in order, 1 to 40 (a
  // line the pause cut in two goes on after the restore), the PIT's ticks growing, one boot.
  void expect_restored_run(const std::string& state, const std::string& mem,
                           const std::string& before) {
    const KilnRun r = run_kiln({"--restore", state, "--mem", mem}, {}, 180);
    ASSERT_EQ(r.exit_code, 0) << describe(r);
    expect_one_run(before + r.out, describe(r));
  }
  static void expect_one_run(const std::string& out, const std::string& what) {
    const auto lines = lines_of(out);
    ASSERT_EQ(lines.size(), 40u) << out << what;
    for (size_t i = 0; i < lines.size(); ++i) {
      EXPECT_EQ(lines[i].first, static_cast<int>(i + 1)) << out;
      if (i) {
        EXPECT_GT(lines[i].second, lines[i - 1].second) << out;
      }
    }
    EXPECT_EQ(out.find("SNAP ready"), out.rfind("SNAP ready")) << "it booted again: " << out;
    EXPECT_NE(out.find("SNAP memory ok\nSNAP done"), std::string::npos) << out << what;
  }
  // What the paused VM printed (after a short wait for output in flight).
  std::string printed() {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return vm_->out();
  }
  std::string dir_;
  std::string socket_;
  std::unique_ptr<KilnProcess> vm_;
};

TEST_F(SnapshotTest, AGuestSnapshottedMidRunContinuesInANewProcessTwice) {
  KILN_REQUIRE_KVM();
  boot(false, 3);
  // The guest ends 4 s after its first line: it is paused here first (a `kiln` process can take
  // longer than that to start on a slow host, e.g. ASan in the nested-KVM VM). The command
  // line's way then: `kiln snapshot create` pauses the VM (already paused: no change) and
  // snapshots it.
  pause();
  const KilnRun created = run_kiln({"snapshot", "create", "--api-sock", socket_, "--snapshot-path",
                                    path("full.state"), "--mem-file-path", path("full.mem")});
  ASSERT_EQ(created.exit_code, 0) << describe(created);
  EXPECT_EQ(api_request(socket_, "GET", "/").body.value("state", ""), "Paused");
  const std::string before = printed();
  kill_vm();
  const std::string mem_before = read_file(path("full.mem"));
  // Restored twice from the same files: the files are not written.
  expect_restored_run(path("full.state"), path("full.mem"), before);
  expect_restored_run(path("full.state"), path("full.mem"), before);
  EXPECT_TRUE(read_file(path("full.mem")) == mem_before) << "a restore wrote its memory file";
  // The memory file is sparse: the guest's 64 MiB are mostly zero pages, left as holes.
  struct stat st {};
  ASSERT_EQ(::stat(path("full.mem").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, (64 << 20) + 4096);
  EXPECT_LT(st.st_blocks * 512, 32 << 20);
}

TEST_F(SnapshotTest, ARestoredVmStaysPausedUntilResumedAndCanBeSnapshottedAgain) {
  KILN_REQUIRE_KVM();
  boot(false, 2);
  pause();
  const std::string before = printed();
  const int last = lines_of(before).back().first;
  snapshot("a");
  kill_vm();
  // PUT /snapshot/load on a fresh process, resume_vm false: nothing runs until Resumed.
  socket_ = temp_socket_path("kiln-snap");
  vm_ = std::make_unique<KilnProcess>(std::vector<std::string>{"--api-sock", socket_});
  ASSERT_TRUE(wait_for_socket(socket_, 20));
  put("/snapshot/load",
      {{"snapshot_path", path("a.state")},
       {"mem_backend", {{"backend_type", "File"}, {"backend_path", path("a.mem")}}},
       {"resume_vm", false}});
  EXPECT_EQ(api_request(socket_, "GET", "/").body.value("state", ""), "Paused");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_TRUE(lines_of(vm_->out()).empty()) << vm_->out();
  // A second load, and configuration, are refused once a VM exists.
  put("/snapshot/load", {{"snapshot_path", path("a.state")}, {"mem_file_path", path("a.mem")}},
      400);
  resume();
  ASSERT_TRUE(vm_->wait_for_output("SNAP n=" + std::to_string(last + 3) + " ", 60)) << vm_->out();
  pause();
  const std::string between = printed();
  snapshot("b");
  kill_vm();
  expect_restored_run(path("b.state"), path("b.mem"), before + between);
}

TEST_F(SnapshotTest, ADiffMergedOntoItsFullBaseIsTheFullSnapshot) {
  KILN_REQUIRE_KVM();
  boot(true, 2);
  pause();
  snapshot("base");
  resume();
  const int resumed_at = lines_of(vm_->out()).back().first;
  ASSERT_TRUE(vm_->wait_for_output("SNAP n=" + std::to_string(resumed_at + 3) + " ", 60));
  pause();
  const std::string before = printed();
  snapshot("diff", "Diff");
  snapshot("full");  // the same paused moment, every page
  kill_vm();
  // The Diff holds the pages written since the base (a few slices, the stack): far smaller.
  struct stat diff_st {};
  ASSERT_EQ(::stat(path("diff.mem").c_str(), &diff_st), 0);
  EXPECT_LT(diff_st.st_blocks * 512, 2 << 20);
  const KilnRun rebased = run_kiln(
      {"snapshot", "rebase", "--base-file", path("base.mem"), "--diff-file", path("diff.mem")});
  ASSERT_EQ(rebased.exit_code, 0) << describe(rebased);
  std::string merged = read_file(path("base.mem"));
  std::string full = read_file(path("full.mem"));
  ASSERT_EQ(merged.size(), full.size());
  const size_t ram = merged.size() - snapshot::kMemoryTrailerSize;
  EXPECT_TRUE(merged.compare(0, ram, full, 0, ram) == 0) << "base + diff differs from the full";
  expect_restored_run(path("diff.state"), path("base.mem"), before);
  // The full snapshot's state does not pair with the merged memory (another snapshot's id).
  const KilnRun mixed = run_kiln({"--restore", path("full.state"), "--mem", path("base.mem")});
  EXPECT_EQ(mixed.exit_code, 2) << describe(mixed);
  EXPECT_NE(mixed.err.find("taken with another snapshot"), std::string::npos) << describe(mixed);
}

TEST_F(SnapshotTest, APageFaultHandlerServesTheMemoryOfAUffdRestore) {
  KILN_REQUIRE_KVM();
  // KVM's faults come from the kernel: an unprivileged user without
  // vm.unprivileged_userfaultfd=1 cannot make such a userfaultfd (Kiln then refuses the load
  // saying so; the refusal case below still runs then).
  if (UniqueFd probe(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC))); !probe)
    GTEST_SKIP() << "userfaultfd for kernel faults: " << std::strerror(errno);
  boot(false, 2);
  pause();
  const std::string before = printed();
  snapshot("full");
  kill_vm();
  // The handler (tests/support/uffd_handler.cc) serves pages of the memory file as Firecracker's
  // example handlers do; Kiln hands it the guest's RAM through PUT /snapshot/load.
  const std::string handler_socket = path("uffd.sock");
  KilnProcess handler({handler_socket, path("full.mem")}, uffd_handler_path());
  ASSERT_TRUE(handler.wait_for_output("uffd-handler: listening", 20)) << handler.err();
  socket_ = temp_socket_path("kiln-snap");
  vm_ = std::make_unique<KilnProcess>(std::vector<std::string>{"--api-sock", socket_});
  ASSERT_TRUE(wait_for_socket(socket_, 20));
  put("/snapshot/load",
      {{"snapshot_path", path("full.state")},
       {"mem_backend", {{"backend_type", "Uffd"}, {"backend_path", handler_socket}}},
       {"resume_vm", true}});
  ASSERT_EQ(vm_->wait(120), 0) << vm_->out() << vm_->err();
  expect_one_run(before + vm_->out(), vm_->err());
  vm_.reset();
  handler.signal(SIGTERM);
  ASSERT_EQ(handler.wait(20), 0) << handler.err();
  const std::regex served("served ([0-9]+) pages");
  std::smatch m;
  const std::string out = handler.out();
  ASSERT_TRUE(std::regex_search(out, m, served)) << out;
  // It served what the guest touched: its 4 MiB pattern and a little more, not all 64 MiB.
  EXPECT_GT(std::stol(m[1]), 1024);
  EXPECT_LT(std::stol(m[1]), 8192);
  // Without a handler listening, the load is refused and says so.
  socket_ = temp_socket_path("kiln-snap");
  vm_ = std::make_unique<KilnProcess>(std::vector<std::string>{"--api-sock", socket_});
  ASSERT_TRUE(wait_for_socket(socket_, 20));
  const ApiResponse r =
      call("PUT", "/snapshot/load",
           {{"snapshot_path", path("full.state")},
            {"mem_backend", {{"backend_type", "Uffd"}, {"backend_path", path("nobody.sock")}}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.raw_body.find("handler listening"), std::string::npos) << r.raw_body;
}

TEST_F(SnapshotTest, SnapshotRequestsAreRefusedWhenTheyCannotWork) {
  KILN_REQUIRE_KVM();
  boot(false, 1);
  // Not paused.
  put("/snapshot/create", {{"snapshot_path", path("x.state")}, {"mem_file_path", path("x.mem")}},
      400);
  pause();
  // Diff without track_dirty_pages; a directory that does not exist.
  put("/snapshot/create",
      {{"snapshot_type", "Diff"},
       {"snapshot_path", path("x.state")},
       {"mem_file_path", path("x.mem")}},
      400);
  put("/snapshot/create",
      {{"snapshot_path", path("none/x.state")}, {"mem_file_path", path("none/x.mem")}}, 400);
  // The command line says what the VM refused, and that a socket is not there.
  const KilnRun diff =
      run_kiln({"snapshot", "create", "--api-sock", socket_, "--type", "Diff", "--snapshot-path",
                path("x.state"), "--mem-file-path", path("x.mem")});
  EXPECT_EQ(diff.exit_code, 2) << describe(diff);
  EXPECT_NE(diff.err.find("track_dirty_pages"), std::string::npos) << describe(diff);
  const KilnRun gone =
      run_kiln({"snapshot", "create", "--api-sock", path("none.sock"), "--snapshot-path",
                path("x.state"), "--mem-file-path", path("x.mem")});
  EXPECT_EQ(gone.exit_code, 1) << describe(gone);
  EXPECT_NE(gone.err.find("none.sock"), std::string::npos) << describe(gone);
  // Bad bodies.
  put("/snapshot/create", {{"snapshot_path", path("x.state")}}, 400);
  put("/snapshot/create",
      {{"snapshot_type", "Half"},
       {"snapshot_path", path("x.state")},
       {"mem_file_path", path("x.mem")}},
      400);
  put("/snapshot/load", {{"snapshot_path", path("x.state")}, {"mem_file_path", path("x.mem")}},
      400);
  struct stat st {};
  EXPECT_NE(::stat(path("x.state").c_str(), &st), 0) << "a refused snapshot left a file";
  EXPECT_NE(::stat(path("x.mem").c_str(), &st), 0) << "a refused snapshot left a file";
}

TEST_F(SnapshotTest, BadSnapshotFilesAreRefusedBeforeAnythingRuns) {
  KILN_REQUIRE_KVM();
  boot(false, 1);
  pause();
  snapshot("good");
  kill_vm();
  auto refused = [&](const std::vector<std::string>& args, const std::string& why) {
    const KilnRun r = run_kiln(args);
    EXPECT_EQ(r.exit_code, 2) << describe(r);
    EXPECT_NE(r.err.find(why), std::string::npos) << describe(r);
    EXPECT_TRUE(lines_of(r.out).empty()) << describe(r);
  };
  const std::string state = read_file(path("good.state"));
  std::ofstream(path("truncated.state"), std::ios::binary) << state.substr(0, state.size() / 2);
  refused({"--restore", path("truncated.state"), "--mem", path("good.mem")}, "checksum");
  std::string flipped = state;
  flipped[flipped.size() / 3] ^= 0x40;
  std::ofstream(path("flipped.state"), std::ios::binary) << flipped;
  refused({"--restore", path("flipped.state"), "--mem", path("good.mem")}, "checksum");
  refused({"--restore", path("good.mem"), "--mem", path("good.mem")}, "not a Kiln state file");
  refused({"--restore", path("missing.state"), "--mem", path("good.mem")}, "missing.state");
  const std::string mem = read_file(path("good.mem"));
  std::ofstream(path("short.mem"), std::ios::binary) << mem.substr(0, mem.size() - 8192);
  refused({"--restore", path("good.state"), "--mem", path("short.mem")}, "bytes");
  // The CLI's own checks.
  refused({"--restore", path("good.state")}, "--mem");
  refused({"--restore", path("good.state"), "--mem", path("good.mem"), "--net-override", "eth0"},
          "IFACE_ID=TAP");
}

}  // namespace
}  // namespace kiln::e2e
