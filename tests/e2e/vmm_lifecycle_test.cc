// In-process: building, running and destroying a Vmm joins every thread and closes every fd.
#include <dirent.h>
#include <gtest/gtest.h>

#include <unistd.h>
#include "tests/support/test_files.h"

#include <poll.h>

#include <chrono>
#include <fstream>
#include <set>
#include <string>

#include "tests/e2e/kiln_process.h"
#include "vmm/vmm.h"

namespace kiln::e2e {
namespace {

int count_threads() {
  int n = 0;
  DIR* dir = ::opendir("/proc/self/task");
  while (dirent* e = ::readdir(dir)) n += e->d_name[0] != '.';
  ::closedir(dir);
  return n;
}

// Names of this process's threads (/proc/self/task/*/comm).
std::multiset<std::string> thread_names() {
  std::multiset<std::string> names;
  DIR* dir = ::opendir("/proc/self/task");
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string name;
    std::getline(comm, name);
    names.insert(name);
  }
  ::closedir(dir);
  return names;
}

// Reads `fd` into `out` until it contains `text` or `seconds` pass.
bool read_until(int fd, std::string& out, const std::string& text, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (out.find(text) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) return false;
    out.append(buf, static_cast<size_t>(n));
  }
  return true;
}

TEST(VmmLifecycle, NoThreadOrFdOutlivesTheVm) {
  KILN_REQUIRE_KVM();
  TempFile disk(std::string(1 << 20, '\0'));
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  const int fds_before = test::count_open_fds();
  const int threads_before = count_threads();
  {
    VmConfig config;
    config.kernel_path = guest_path("virtio_blk");
    config.vcpus = 2;
    config.drives.push_back({disk.path(), false, "", false});
    Vmm vmm(config, ConsoleFds{-1, out[1]});
    const StopReason reason = vmm.run();
    EXPECT_EQ(reason.exit_code, kExitGuestStopped) << reason.message;
  }
  EXPECT_EQ(count_threads(), threads_before);
  EXPECT_EQ(test::count_open_fds(), fds_before);
  ::close(out[0]);
  ::close(out[1]);
}

// Four vCPUs, the three APs halted in the in-kernel LAPIC after their INIT/SIPI start, the BSP
// spinning: one named thread per vCPU, pause and resume park and release all of them, and a
// stop from the VMM gets every one out of KVM_RUN (halted ones included) and joins it.
TEST(VmmLifecycle, SmpVcpuThreadsPauseResumeAndJoin) {
  KILN_REQUIRE_KVM();
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  const int fds_before = test::count_open_fds();
  const int threads_before = count_threads();
  {
    VmConfig config;
    config.kernel_path = guest_path("smp");
    config.cmdline = "smp.hold";
    config.vcpus = 4;
    Vmm vmm(config, ConsoleFds{-1, out[1]});
    vmm.start();
    std::string console;
    ASSERT_TRUE(read_until(out[0], console, "smp holding\n", 120)) << console;
    EXPECT_NE(console.find("smp ok cpus=4\n"), std::string::npos) << console;
    const std::multiset<std::string> names = thread_names();
    for (int i = 0; i < 4; ++i) EXPECT_EQ(names.count("kiln-vcpu" + std::to_string(i)), 1u) << i;
    EXPECT_EQ(names.count("kiln-vcpu4"), 0u);
    EXPECT_EQ(count_threads(), threads_before + 4 + 1);  // vCPUs + kiln-events

    vmm.pause();  // returns once every vCPU thread is parked outside KVM_RUN
    vmm.resume();
    vmm.pause();
    vmm.resume();
    const StopReason reason = vmm.shutdown();
    EXPECT_EQ(reason.exit_code, kExitUserStop) << reason.message;
  }
  EXPECT_EQ(count_threads(), threads_before);
  EXPECT_EQ(test::count_open_fds(), fds_before);
  ::close(out[0]);
  ::close(out[1]);
}

// Pause stops the devices too: console input typed while the VM is paused is held (not handed
// to the UART, not lost) and reaches the guest after resume.
TEST(VmmLifecycle, ConsoleInputTypedWhilePausedArrivesAfterResume) {
  KILN_REQUIRE_KVM();
  int in[2], out[2];
  ASSERT_EQ(::pipe(in), 0);
  ASSERT_EQ(::pipe(out), 0);
  {
    VmConfig config;
    config.kernel_path = guest_path("serial_in");
    Vmm vmm(config, ConsoleFds{in[0], out[1]});
    vmm.start();
    std::string console;
    ASSERT_TRUE(read_until(out[0], console, "READY\n", 120)) << console;
    vmm.pause();
    const std::string line = "typed while paused\n";
    ASSERT_EQ(::write(in[1], line.data(), line.size()), static_cast<ssize_t>(line.size()));
    EXPECT_FALSE(read_until(out[0], console, "GOT:", 1)) << console;
    vmm.resume();
    ASSERT_TRUE(read_until(out[0], console, "GOT:typed while paused\n", 120)) << console;
    vmm.stop_signal().wait();  // the guest resets after its answer
    const StopReason reason = vmm.shutdown();
    EXPECT_EQ(reason.exit_code, kExitGuestStopped) << reason.message;
  }
  for (int fd : {in[0], in[1], out[0], out[1]}) ::close(fd);
}

}  // namespace
}  // namespace kiln::e2e
