// In-process: building, running and destroying a Vmm joins every thread and closes every fd.
#include <dirent.h>
#include <gtest/gtest.h>

#include <unistd.h>
#include "tests/support/test_files.h"

#include <fstream>

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

}  // namespace
}  // namespace kiln::e2e
