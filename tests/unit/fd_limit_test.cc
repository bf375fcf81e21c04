// raise_fd_limit(): the soft RLIMIT_NOFILE goes up to the hard limit (in a child, so the test
// process keeps its own limit).
#include "base/fd_limit.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

namespace kiln {
namespace {

TEST(FdLimit, RaisesTheSoftLimitToTheHardLimit) {
  EXPECT_EXIT(
      {
        rlimit rl{};
        ::getrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_max < 128) _exit(0);  // nothing to raise
        rl.rlim_cur = 64;
        if (::setrlimit(RLIMIT_NOFILE, &rl) < 0 || fd_limit() != 64) _exit(2);
        const uint64_t raised = raise_fd_limit();
        rlimit now{};
        ::getrlimit(RLIMIT_NOFILE, &now);
        const bool ok = raised == now.rlim_cur && raised > 64 &&
                        (rl.rlim_max == RLIM_INFINITY || raised == rl.rlim_max);
        _exit(ok ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace kiln
