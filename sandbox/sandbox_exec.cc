// `kiln sandbox exec`: another process in a running sandbox, through a connection of its own to
// the agent (the sandbox's vsock socket), with the workload's environment, working directory
// and user as defaults.
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>

#include "base/error.h"
#include "image/run_spec.h"
#include "image/user_db.h"
#include "sandbox/commands.h"
#include "sandbox/registry.h"

namespace kiln::sandbox {

using namespace std::chrono_literals;

namespace {

// `env` with each K=V of `overrides` replacing the entry of the same K, or appended.
void apply_env(std::vector<std::string>& env, const std::vector<std::string>& overrides) {
  for (const auto& kv : overrides) {
    std::string key = kv.substr(0, kv.find('=') + 1);
    auto it = std::find_if(env.begin(), env.end(),
                           [&](const std::string& e) { return e.rfind(key, 0) == 0; });
    if (it != env.end())
      *it = kv;
    else
      env.push_back(kv);
  }
}

bool is_socket(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

}  // namespace

int exec(const ExecOptions& o) {
  UniqueFd signals = forwarded_signals();
  agent::Start s;
  std::string uds, user_root;
  if (o.target.find('/') != std::string::npos || is_socket(o.target)) {
    if (!is_socket(o.target))
      throw kiln::UsageError(o.target +
                             " is not a socket (want a sandbox's name or its vsock "
                             "socket)");
    uds = o.target;
    s.env = {image::kDefaultPath, "HOME=/root"};
  } else {
    Registry reg;
    Record r = reg.read(o.target);
    if (r.status == Status::kExited)
      throw kiln::UsageError("sandbox " + o.target + " has exited (status " +
                             std::to_string(r.exit_status) + ")");
    if (!Registry::alive(r))
      throw kiln::UsageError("sandbox " + o.target +
                             " is dead: its kiln process ended without recording it");
    uds = (reg.dir(o.target) / "vsock").string();
    s.env = r.env;
    s.cwd = r.cwd;
    s.uid = r.uid;
    s.gid = r.gid;
    s.groups = r.groups;
    user_root = r.user_root;
  }
  apply_env(s.env, o.env);
  if (o.workdir) s.cwd = *o.workdir;
  if (o.user && !user_root.empty()) {
    image::ResolvedUser u = image::resolve_user(user_root, *o.user, "-u");
    s.uid = u.uid;
    s.gid = u.gid;
    s.groups = u.groups;
  } else if (o.user) {
    std::tie(s.uid, s.gid) = parse_numeric_user(*o.user);
    s.groups.clear();
  }
  s.argv = o.command;
  return exec_process(uds, s, o.attach, signals.get(), {});
}

int exec_process(const std::string& uds, const agent::Start& s, const AttachOptions& attach_opts,
                 int signal_fd, const std::function<void()>& on_started) {
  // A sandbox still booting is waited for.
  AgentClient client(AgentClient::connect_vsock(uds, agent::kDefaultPort, 60s));
  client.forward_signals(signal_fd);
  client.handshake(10s);
  bool started = false;
  try {
    return attach(client, s, attach_opts, [&](uint32_t) {
      started = true;
      if (on_started) on_started();
    });
  } catch (const kiln::Error& e) {
    if (!started) throw;
    // The sandbox stopped (its workload ended) while this process ran: it was killed with it.
    std::fprintf(stderr, "kiln sandbox exec: the sandbox stopped before '%s' exited (%s)\n",
                 s.argv[0].c_str(), e.what());
    return 128 + 9;
  }
}

}  // namespace kiln::sandbox
