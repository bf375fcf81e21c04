// What `kiln jail` is asked to do (Firecracker jailer's flags): jail/cli.cc reads and checks
// them, jail/jailer.cc carries them out.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kiln::jail {

struct JailOptions {
  std::string id;         // 1 to 64 letters, digits and hyphens
  std::string exec_file;  // the executable copied into the jail and run there
  uid_t uid = 0;          // who it runs as
  gid_t gid = 0;
  std::string chroot_base = "/srv/jailer";  // the jail is <base>/<exec name>/<id>/root
  std::string netns;                        // a network namespace to join (a path), or none
  bool daemonize = false;                   // setsid(), stdio to /dev/null
  bool new_pid_ns = false;                  // the executable is PID 1 of a new PID namespace
  int cgroup_version = 1;
  std::vector<std::pair<std::string, std::string>> cgroups;  // --cgroup FILE=VALUE, in order
  std::string parent_cgroup;                                 // empty: the exec name
  // --resource-limit: RLIMIT_FSIZE and RLIMIT_NOFILE (default 2048).
  std::vector<std::pair<int, uint64_t>> rlimits;
  std::vector<std::string> args;  // after `--`: the executable's arguments

  // The exec file's last path component: the executable's name in the jail.
  std::string exec_name() const { return exec_file.substr(exec_file.rfind('/') + 1); }
  // <chroot_base>/<exec name>/<id>/root.
  std::string chroot_dir() const { return chroot_base + "/" + exec_name() + "/" + id + "/root"; }
};

}  // namespace kiln::jail
