// Runs the real `kiln` binary as a child process for end-to-end tests: feeds stdin (optionally
// only after the guest printed a prompt), collects stdout/stderr, enforces a time limit.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "tests/support/test_files.h"

namespace kiln::e2e {

struct KilnRun {
  int exit_code = -1;  // -1: killed on timeout or by a signal
  bool timed_out = false;
  std::string out;
  std::string err;
  long max_rss_kib = -1;  // the process's peak resident memory (wait4's rusage)
};

struct KilnInput {
  std::string wait_for;  // write `data` once stdout contains this (empty: at once)
  std::string data;
  bool close_stdin = false;  // close stdin after writing
};

// Path of build/kiln and of a built test guest ("hello", ".elf"/".bzimage"), from the
// environment meson sets (KILN_BIN, KILN_GUEST_DIR).
std::string kiln_binary();
std::string guest_path(const std::string& name, const std::string& kind = ".elf");

// The test page-fault handler for Uffd restores (tests/support/uffd_handler.cc).
std::string uffd_handler_path();

// `kiln` (or `program`) with `args`, its stdin/stdout/stderr on pipes (the caller owns the
// three fds).
struct SpawnedKiln {
  pid_t pid = -1;
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
};
SpawnedKiln spawn_kiln(const std::vector<std::string>& args, const std::string& program = "");

// "exit N", then stdout and stderr: for assertion messages.
std::string describe(const KilnRun& r);

KilnRun run_kiln(const std::vector<std::string>& args, const KilnInput& input = {},
                 int timeout_seconds = 120);

// True when /dev/kvm opens for read/write here; otherwise `why` says what failed.
bool kvm_usable(std::string* why);

using test::TempFile;

}  // namespace kiln::e2e

#define KILN_REQUIRE_KVM()                                                           \
  do {                                                                               \
    std::string why_;                                                                \
    if (!::kiln::e2e::kvm_usable(&why_)) GTEST_SKIP() << "needs /dev/kvm: " << why_; \
  } while (0)
