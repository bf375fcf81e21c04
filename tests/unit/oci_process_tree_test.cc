// oci/process_tree.cc: a process's descendants from /proc, and runc's ps table filtered to them.
#include "oci/process_tree.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <string>

#include "base/error.h"

namespace kiln::oci {
namespace {

// A child that forks a grandchild; both sleep until killed.
struct Family {
  Family() {
    int p[2];
    if (pipe(p) != 0) abort();
    child = fork();
    if (child == 0) {
      close(p[0]);
      pid_t grandchild = fork();
      if (grandchild == 0) {
        pause();
        _exit(0);
      }
      (void)!write(p[1], &grandchild, sizeof grandchild);
      pause();
      _exit(0);
    }
    close(p[1]);
    if (read(p[0], &grandchild, sizeof grandchild) != sizeof grandchild) grandchild = 0;
    close(p[0]);
  }
  ~Family() {
    ::kill(grandchild, SIGKILL);
    ::kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
  }
  pid_t child = 0, grandchild = 0;
};

TEST(ProcessTree, ARootAndItsDescendants) {
  Family f;
  ASSERT_GT(f.grandchild, 0);
  std::vector<pid_t> tree = process_tree(f.child);
  EXPECT_EQ(tree, (std::vector<pid_t>{f.child, f.grandchild}));
  // From this process: it comes first, its child and grandchild follow.
  tree = process_tree(getpid());
  ASSERT_GE(tree.size(), 3u);
  EXPECT_EQ(tree[0], getpid());
  EXPECT_NE(std::find(tree.begin(), tree.end(), f.grandchild), tree.end());
}

TEST(ProcessTree, AProcessThatIsGoneHasNone) {
  pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  EXPECT_TRUE(process_tree(child).empty());
}

TEST(PsTable, TheHeaderAndOnlyTheGivenPids) {
  Family f;
  std::string table = ps_table({f.grandchild}, {"-e", "-o", "ppid,pid"});
  std::istringstream lines(table);
  std::string header, line, extra;
  std::getline(lines, header);
  std::getline(lines, line);
  EXPECT_FALSE(std::getline(lines, extra)) << table;
  std::istringstream h(header), l(line);
  std::string c1, c2;
  long ppid = 0, pid = 0;
  h >> c1 >> c2;
  l >> ppid >> pid;
  EXPECT_EQ(c1 + " " + c2, "PPID PID") << table;
  EXPECT_EQ(pid, f.grandchild) << table;
  EXPECT_EQ(ppid, f.child) << table;
}

TEST(PsTable, ArgumentsWithoutAPidColumnAreRefused) {
  EXPECT_THROW(ps_table({getpid()}, {"-o", "comm"}), kiln::Error);
  EXPECT_THROW(ps_table({getpid()}, {"--no-such-ps-option"}), kiln::Error);
}

}  // namespace
}  // namespace kiln::oci
