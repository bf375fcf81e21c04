// The `kiln sandbox` commands behind the command line (sandbox/cli.cc parses it).
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sandbox/attach.h"
#include "sandbox/network.h"
#include "sandbox/workload.h"

namespace kiln::sandbox {

inline constexpr int kExitKiln = 125;  // Kiln failed (2 could be a workload's own status)

struct RunOptions {
  std::string kernel, initrd;
  WorkloadRequest workload;
  std::vector<Volume> volumes;
  std::vector<FileBind> files;
  std::vector<std::string> tmpfs;  // "/DIR[:OPTS]", checked by agent::parse_tmpfs
  std::vector<SandboxNet> nets;    // one virtio-net device each, in order
  std::optional<std::string> name;
  bool remove = false;  // --rm
  AttachOptions attach;
  bool timings = false;
  bool vmm_api = false;  // kiln run serves its API on the sandbox's api.sock (kiln-oci pause)
  // Appends the phases' times (ms from Kiln's start) as a JSON line to this file once the
  // workload exited (kiln-oci: the io.kiln.timings annotation).
  std::string timings_file;
  std::string console_log;  // empty: the sandbox's own console.log (kept until rm)
  unsigned cpus = 1, memory = 256, boot_timeout = 300;
  // Restore a pooled snapshot of a booted guest (sandbox/warm.h) rather than boot: made on
  // first use per kernel, initramfs and shape. Not with a disk root yet.
  bool warm = false;
  // kiln-oci: the workload planned by the caller (its root and Start) rather than from
  // `workload` (whose root is still what the record shows), and the guest's hostname.
  std::optional<Workload> planned;
  std::string hostname;
  std::string state_root;  // the registry's root (empty: Registry::default_root())
  // The process the record names as the sandbox's (0: this one). kiln-oci: the container's
  // host process, this process's parent, which lives and dies with it.
  pid_t host_pid = 0;
  // A start gate: once the agent is ready the sandbox is recorded `created`, `on_created`
  // runs, and the workload waits for a start request on the control socket (kiln-oci start).
  // A signal before that (through the control socket, or to this process) ends the sandbox
  // with 128+N.
  bool wait_for_start = false;
  std::function<void()> on_created;
};
// Boots the sandbox, runs the workload, records it; the workload's status.
int run(const RunOptions& o);

struct ExecOptions {
  std::string target;  // a sandbox's name, or the path of a vsock socket
  std::vector<std::string> command, env;
  std::optional<std::string> workdir, user;
  AttachOptions attach;
};
int exec(const ExecOptions& o);
// One process through a sandbox's vsock socket `uds`, attached to this process's stdio;
// `on_started` runs once the agent started it. Its status (126/127: it could not start).
int exec_process(const std::string& uds, const agent::Start& s, const AttachOptions& attach,
                 int signal_fd, const std::function<void()>& on_started);

int list(bool all, bool quiet, bool json);
int kill(const std::string& name, const std::string& signal);
int remove(const std::vector<std::string>& names, bool force);

}  // namespace kiln::sandbox
