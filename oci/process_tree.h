// `kiln-oci ps`: the host processes that stand for a container, as runc lists a container's
// (the processes in its cgroup). For a microVM that is the container's host process and its
// descendants: the sandbox process and the VMM. The guest's own processes are not host
// processes (`exec ID ps` lists them).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace kiln::oci {

// `root` and every process descended from it now, root first (none if it is gone).
std::vector<pid_t> process_tree(pid_t root);

// runc's table: `ps ARGS` (default -ef) run, its header and the lines whose PID column is one
// of `pids`. Throws kiln::Error if ps fails or prints no PID column.
std::string ps_table(const std::vector<pid_t>& pids, const std::vector<std::string>& args);

}  // namespace kiln::oci
