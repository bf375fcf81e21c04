// The `kiln` child a sandbox runs its microVM in (kiln run, or kiln --restore for a warm one):
// spawned with its console in a log file, waited for, its console's tail for errors.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace kiln::sandbox {

// `args` (argv[0] included) run as this same executable: its console goes to `log`, its stdin
// is /dev/null; its own process group (a terminal's ^C reaches the workload through the
// agent, not the VM); SIGKILL when this process dies (kill -9 of the sandbox must not leave a
// VM running).
pid_t spawn_vm(const std::vector<std::string>& args, const std::string& log);

// Waits up to `timeout` for the VM to end; kills it after that (-1). Its exit status.
int wait_vm(pid_t pid, std::chrono::milliseconds timeout);

// The last `max` bytes of a console log ("..." before them when cut).
std::string tail_of(const std::string& path, size_t max = 2000);

// Kills and reaps the VM when it goes out of scope, unless pid was set to 0 (reaped already).
struct VmReaper {
  explicit VmReaper(pid_t p) : pid(p) {}
  ~VmReaper();
  VmReaper(const VmReaper&) = delete;
  VmReaper& operator=(const VmReaper&) = delete;
  pid_t pid;
};

}  // namespace kiln::sandbox
