// Starting one workload process as a Start message asks: credentials, limits, cwd, env, and
// its stdio on pipes or a new pty. Runs on the host in unit tests as well as in the guest.
#pragma once

#include <sys/types.h>

#include <string>

#include "agent/protocol/messages.h"
#include "base/unique_fd.h"

namespace kiln::agent {

struct Spawned {
  pid_t pid = -1;
  UniqueFd pidfd;
  UniqueFd stdin_fd;   // write end (pipe or pty master); invalid when stdin was not asked for
  UniqueFd stdout_fd;  // read end (pipe or pty master)
  UniqueFd stderr_fd;  // read end; invalid with a terminal (stderr goes to the pty)
};

// Forks and execs. Throws std::runtime_error with what failed (an unknown rlimit name, pipe or
// pty setup, or the child's setup or exec failing: "exec 'nosuch': No such file or directory").
Spawned spawn(const Start& s);

// RLIMIT_ number for a protocol name ("nofile"), or -1.
int rlimit_resource(const std::string& name);

}  // namespace kiln::agent
