// kiln-oci's commands (runc's command line: oci/cli.cc). A container is a sandbox in the
// registry under --root (sandbox/registry.h), named by its ID: `create` starts its `kiln
// sandbox run` process (the container's host process: the pid in --pid-file, a child of the
// caller, exiting with the workload's status) and returns once the agent is ready; `start`
// opens the sandbox's start gate; `state`, `kill`, `delete` and `list` read and drive it.
#pragma once

#include <string>
#include <vector>

namespace kiln::oci {

struct Globals {
  std::string root;  // the state directory (--root)
};

// runc's default --root: /run/kiln-oci for root, $XDG_RUNTIME_DIR/kiln-oci otherwise.
std::string default_root();

struct CreateOptions {
  std::string id, bundle, pid_file, console_socket;
  unsigned preserve_fds = 0;
  bool no_pivot = false;  // the host process's view is chrooted into, not pivoted to
};

int create(const Globals& g, const CreateOptions& o);

// runc exec: the process from --process FILE, or from the command line (--tty, --cwd, --env,
// --user UID[:GID]) with the container's environment. A stand-in process on the host relays
// its stdio and exits with its status: this one, or with --detach a child (its pid in
// --pid-file) while this returns once the process started.
struct ExecOptions {
  std::string id, process_file, pid_file, console_socket, cwd, user;
  std::vector<std::string> env, command;
  bool detach = false, tty = false;
};
int exec(const Globals& g, const ExecOptions& o);
int start(const Globals& g, const std::string& id);
// The container's microVM paused (vCPUs and devices quiesced, PATCH /vm Paused on its VMM's
// API) and resumed; `state` then says "paused". A paused container can be killed and deleted.
int pause(const Globals& g, const std::string& id);
int resume(const Globals& g, const std::string& id);
int state(const Globals& g, const std::string& id);
int kill(const Globals& g, const std::string& id, const std::string& signal);
int remove(const Globals& g, const std::string& id, bool force);
int list(const Globals& g, const std::string& format, bool quiet);
// runc ps: the host processes standing for the container (oci/process_tree.h), as a JSON
// array of pids or as `ps ARGS`'s lines for them.
int ps(const Globals& g, const std::string& id, const std::string& format,
       const std::vector<std::string>& ps_args);
// runc update --resources FILE|-: a running microVM's size cannot change, so an update that
// keeps it succeeds and any other is refused naming the field (oci/spec.h resources_update).
int update(const Globals& g, const std::string& id, const std::string& resources);
int features();

}  // namespace kiln::oci
