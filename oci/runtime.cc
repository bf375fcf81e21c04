#include "oci/runtime.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base/error.h"
#include "base/signals.h"
#include "base/unique_fd.h"
#include "base/unix_socket.h"
#include "base/vmm_api.h"
#include "oci/container_view.h"
#include "oci/log.h"
#include "oci/mount_points.h"
#include "oci/network.h"
#include "oci/process_tree.h"
#include "oci/runtime_config.h"
#include "oci/spec.h"
#include "sandbox/commands.h"
#include "sandbox/control.h"
#include "sandbox/registry.h"

namespace kiln::oci {

namespace fs = std::filesystem;
using nlohmann::json;
using sandbox::Record;
using sandbox::Registry;
using sandbox::Status;
using namespace std::chrono_literals;

namespace {

constexpr const char* kOciVersion = "1.0.2";

// What `create` adds beside the sandbox's record: the bundle, for state.
constexpr const char* kOciFile = "oci.json";

fs::path self_dir() {
  return fs::read_symlink("/proc/self/exe").parent_path();
}

// A file written whole or not at all (a temporary file renamed over it).
void write_atomically(const fs::path& path, const std::string& text) {
  fs::path tmp = path.string() + ".tmp";
  {
    UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) throw_errno("write " + tmp.string());
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      throw_errno("write " + tmp.string());
  }
  if (rename(tmp.c_str(), path.c_str()) < 0) throw_errno("rename " + tmp.string());
}

Record read_container(const Registry& reg, const std::string& id) {
  try {
    return reg.read(id);
  } catch (const UsageError&) {
    throw kiln::Error("container " + id + " does not exist");
  }
}

// The VMM's API socket of container `id` (kiln run --api-sock).
std::string api_socket(const Registry& reg, const std::string& id) {
  return (reg.dir(id) / "api.sock").string();
}

// runc's status names: the record's status, whether its host process still runs, and for a
// running one whether its VMM says it is paused.
std::string oci_status(const Registry& reg, const Record& r) {
  if (r.status == Status::kExited || !Registry::alive(r)) return "stopped";
  switch (r.status) {
    case Status::kStarting:
      return "creating";
    case Status::kCreated:
      return "created";
    default:
      break;
  }
  try {
    auto reply = vmm_api_call(api_socket(reg, r.name), "GET", "/", "", 2000);
    json info = json::parse(reply.body, nullptr, false);
    if (reply.status == 200 && info.is_object() && info.value("state", "") == "Paused")
      return "paused";
  } catch (const kiln::Error&) {
    // No API (a container created by an older kiln-oci) or a busy VMM: running, as recorded.
  }
  return "running";
}

// What create recorded beside the sandbox's record (kOciFile): the bundle, the annotations,
// the size and the network; an empty object if it is missing or unreadable.
json read_extra(const Registry& reg, const std::string& id) {
  std::ifstream f(reg.dir(id) / kOciFile);
  json extra = f ? json::parse(f, nullptr, false) : json();
  return extra.is_object() ? extra : json::object();
}

json state_of(const Registry& reg, const Record& r) {
  json extra = read_extra(reg, r.name);
  std::string status = oci_status(reg, r);
  return {{"ociVersion", kOciVersion},
          {"id", r.name},
          {"pid", status == "stopped" ? 0 : r.pid},
          {"status", status},
          {"bundle", extra.value("bundle", "")},
          {"rootfs", r.root},
          {"created", r.created},
          {"owner", ""},
          {"annotations", extra.value("annotations", json::object())}};
}

// The containers' defaults, and the runtime config's other settings in `config`.
sandbox::RunOptions defaults(RuntimeConfig& config) {
  sandbox::RunOptions d;
  d.kernel = (self_dir() / "guest-kernel" / "vmlinux").string();
  d.initrd = (self_dir() / "agent" / "kiln-agent.cpio").string();
  const char* file = getenv("KILN_OCI_CONFIG");
  config = apply_runtime_config(d, file && *file ? file : kDefaultRuntimeConfig, file && *file);
  for (const auto& [what, path] : {std::pair{"kernel", d.kernel}, {"initramfs", d.initrd}})
    if (!fs::is_regular_file(path))
      throw kiln::Error(std::string("the guest ") + what + " " + path +
                        " is missing (scripts/setup.sh builds it beside kiln)");
  d.attach.interactive = true;  // fd 0 is the container's stdin, whatever the engine made it
  return d;
}

// Waits up to `timeout` for the container's host process to end.
bool wait_gone(const Record& r, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (Registry::alive(r) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  return !Registry::alive(r);
}

// What a child writes to a pipe until it closes it (or until it wrote `prefix`), at most
// 64 KiB.
std::string read_child(int fd, const std::string& prefix = "") {
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((prefix.empty() || text.rfind(prefix, 0) != 0) && text.size() < 65536 &&
         (n = read(fd, buf, sizeof buf)) > 0)
    text.append(buf, static_cast<size_t>(n));
  return text;
}

// `slave` (a pty, if any) as this process's controlling terminal and stdio.
void take_terminal(UniqueFd& slave) {
  if (!slave) return;
  if (ioctl(slave.get(), TIOCSCTTY, 0) < 0 || dup2(slave.get(), 0) < 0 ||
      dup2(slave.get(), 1) < 0 || dup2(slave.get(), 2) < 0)
    throw_errno("make the pty the process's terminal");
  slave.reset();
}

// A child forked in a session of its own that exits with `body(ready)`, and the pipe on which
// it says it is ready (or why it failed).
struct Starting {
  pid_t pid;
  UniqueFd ready;
};

Starting start_child(const std::string& what,
                     const std::function<int(const std::function<void()>&)>& body) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) throw_errno("pipe");
  UniqueFd ready_in(p[0]), ready_out(p[1]);
  std::fflush(nullptr);
  pid_t child = fork();
  if (child < 0) throw_errno("fork " + what);
  if (child == 0) {
    ready_in.reset();
    setsid();
    try {
      std::exit(body([&] {
        (void)!::write(ready_out.get(), "ok\n", 3);
        ready_out.reset();
      }));
    } catch (const std::exception& e) {
      std::string msg = std::string("error: ") + e.what();
      if (ready_out)
        (void)!::write(ready_out.get(), msg.data(), msg.size());
      else
        spdlog::error(e.what());  // after ready: the --log file (stderr is the container's)
      std::exit(sandbox::kExitKiln);
    }
  }
  return {child, std::move(ready_in)};
}

// The child's pid once it called ready(). If it fails first, throws kiln::Error with its
// reason (the child is reaped).
pid_t await_ready(const std::string& what, Starting child) {
  // "ok" is taken as soon as it arrives: the child's own children may hold the pipe open.
  std::string answer = read_child(child.ready.get(), "ok\n");
  if (answer.rfind("ok\n", 0) == 0) return child.pid;
  int st = 0;
  waitpid(child.pid, &st, 0);
  throw kiln::Error(answer.rfind("error: ", 0) == 0 ? answer.substr(7)
                                                    : what + " ended before it was ready");
}

pid_t fork_until_ready(const std::string& what,
                       const std::function<int(const std::function<void()>&)>& body) {
  return await_ready(what, start_child(what, body));
}

// The signals the container's host process passes on to the sandbox's (all but those it
// cannot catch and those only its own faults raise).
sigset_t forwarded_signals() {
  sigset_t set;
  sigfillset(&set);
  for (int s : {SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT})
    sigdelset(&set, s);
  return set;
}

// Passes every signal on to `worker` until it ends; its status as an exit status.
int forward_until_exit(pid_t worker, const sigset_t& set) {
  for (;;) {
    int st = 0;
    pid_t done = waitpid(worker, &st, WNOHANG);
    if (done == worker) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (done < 0 && errno != EINTR) return sandbox::kExitKiln;
    siginfo_t si;
    int sig = sigwaitinfo(&set, &si);
    if (sig > 0 && sig != SIGCHLD) ::kill(worker, sig);
  }
}

// A new pty of `rows` x `cols`: its master goes to the console socket (SCM_RIGHTS, with the
// slave's name as the message, as runc sends it); the slave is returned.
UniqueFd open_console(const std::string& socket_path, uint16_t rows, uint16_t cols) {
  UniqueFd master(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master || grantpt(master.get()) < 0 || unlockpt(master.get()) < 0)
    throw_errno("make a pty for the container");
  char name[128];
  if (ptsname_r(master.get(), name, sizeof name) != 0) throw_errno("ptsname");
  winsize ws{};
  ws.ws_row = rows;
  ws.ws_col = cols;
  ioctl(master.get(), TIOCSWINSZ, &ws);
  UniqueFd slave(open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!slave) throw_errno(std::string("open ") + name);

  auto a = unix_address(socket_path);
  if (!a) throw UsageError("--console-socket " + socket_path + ": the path is empty or too long");
  UniqueFd s = connect_unix(*a);
  if (!s) throw_errno("connect to --console-socket " + socket_path);
  if (!send_with_fd(s.get(), name, master.get())) throw_errno("send the pty to --console-socket");
  return slave;
}

// The container's network namespace entered (by this process: the VMM it starts lives
// there); each interface the engine made in it (none: loopback only) connected to a TAP of
// its own and given to the guest (`b.run.nets`). One default route: the first interface's
// that has one.
std::vector<Connected> connect_engine_network(Bundle& b) {
  std::vector<Connected> done;
  if (b.netns.empty()) return done;
  enter_netns(b.netns);
  std::vector<EngineLink> links = engine_links();
  if (links.size() > kMaxEngineLinks)
    throw UsageError("linux.namespaces: the network namespace " + b.netns + " has " +
                     std::to_string(links.size()) + " interfaces: kiln-oci connects at most " +
                     std::to_string(kMaxEngineLinks));
  bool routed = false;
  try {
    for (size_t i = 0; i < links.size(); ++i) {
      EngineLink& l = links[i];
      if (!guest_name_ok(l.name))
        throw UsageError("linux.namespaces: interface '" + l.name + "' in " + b.netns +
                         ": the guest cannot take its name (letters, digits, '_', '-', '.')");
      if (routed && !l.gateway.empty()) {
        l.left_out.push_back("default route via " + l.gateway);
        l.gateway.clear();
      }
      routed = routed || !l.gateway.empty();
      for (const auto& what : l.left_out)
        spdlog::warn(
            "the microVM does not get {}'s {} (kiln-oci gives each interface one IPv4 address, "
            "and one default route)",
            l.name, what);
      std::string tap = tap_name(i);
      connect_tap(l, tap);
      done.push_back({l.name, tap});
      b.run.nets.push_back(guest_net(l, tap));
    }
  } catch (...) {
    for (const auto& c : done) {
      try {
        disconnect_tap(c.link, c.tap);
      } catch (const std::exception&) {
        // The first error is the one to report; the namespace goes with the container.
      }
    }
    throw;
  }
  return done;
}

// Takes the TAPs and the redirects away when the container's host process ends.
struct Disconnect {
  const std::vector<Connected>& links;
  ~Disconnect() {
    for (const auto& c : links) {
      try {
        disconnect_tap(c.link, c.tap);
      } catch (const std::exception& e) {
        spdlog::warn("could not remove {} from the container's network: {}", c.tap, e.what());
      }
    }
  }
};

json recorded_network(const std::string& netns, const std::vector<Connected>& links) {
  json list = json::array();
  for (const auto& c : links) list.push_back({{"link", c.link}, {"tap", c.tap}});
  return {{"netns", netns}, {"links", list}};
}

// What is left of a container's network once it stopped (its host process killed before it
// could clean up): the TAPs and the redirects, if the namespace is still there.
void disconnect_recorded(const Registry& reg, const std::string& id) {
  json extra = read_extra(reg, id);
  if (!extra.contains("network") || !extra["network"].is_object()) return;
  const json& n = extra["network"];
  std::string netns = n.value("netns", "");
  if (netns.empty() || !n.contains("links") || !n["links"].is_array()) return;
  std::vector<Connected> links;
  for (const auto& l : n["links"])
    if (l.is_object() && !l.value("link", "").empty() && !l.value("tap", "").empty())
      links.push_back({l.value("link", ""), l.value("tap", "")});
  if (links.empty()) return;
  try {
    in_netns(netns, [&] {
      for (const auto& c : links) disconnect_tap(c.link, c.tap);
    });
  } catch (const std::exception& e) {
    spdlog::warn("container {}: could not remove its TAPs from its network: {}", id, e.what());
  }
}

}  // namespace

std::string default_root() {
  if (geteuid() == 0) return "/run/kiln-oci";
  if (const char* x = getenv("XDG_RUNTIME_DIR"); x && *x) return std::string(x) + "/kiln-oci";
  return "/tmp/kiln-oci-" + std::to_string(geteuid());
}

int create(const Globals& g, const CreateOptions& o) {
  sandbox::check_name(o.id);
  if (o.preserve_fds > 0)
    throw UsageError("--preserve-fds: file descriptors cannot be passed into a microVM");
  Registry reg(g.root);
  if (fs::exists(reg.dir(o.id))) throw kiln::Error("container " + o.id + " already exists");
  RuntimeConfig config;
  Bundle b = load_bundle(o.bundle.empty() ? "." : o.bundle, defaults(config));
  if (!b.run.timings_file.empty() && !config.timings_annotation)
    throw UsageError(
        "config.json: annotations.io.kiln.timings: not enabled (it makes the runtime append "
        "to a file the container's creator names: set timings_annotation = true in the "
        "runtime config to allow it)");
  // A terminal: a pty made here, its master sent to the engine's console socket, its slave
  // the container process's stdio and controlling terminal (resizes arrive as SIGWINCH).
  UniqueFd slave;
  if (b.terminal) {
    if (o.console_socket.empty())
      throw UsageError("config.json: process.terminal needs --console-socket");
    slave = open_console(o.console_socket, b.run.planned->start.rows, b.run.planned->start.cols);
    b.run.attach.tty = true;
  } else if (!o.console_socket.empty()) {
    throw UsageError("--console-socket is for a process with a terminal (process.terminal)");
  }
  make_mount_points(b.rootfs, b.run);
  b.run.name = o.id;
  b.run.state_root = g.root;
  b.run.wait_for_start = true;
  b.run.vmm_api = true;  // pause and resume
  b.run.warm = config.warm;

  pid_t child;
  try {
    // The container's host process: with the caller's stdio (or the pty), in the container's
    // view of its files (oci/container_view.h); the sandbox runs in its child, in the
    // caller's, and this process passes signals on to it and exits with its status.
    child = fork_until_ready("the container's process", [&](const std::function<void()>& ready) {
      take_terminal(slave);
      log_to_file_only();  // this process's stderr is the container's
      // The engine's network: this process (and so the VMM) in the container's network
      // namespace, its interface connected to a TAP there (oci/network.h).
      std::vector<Connected> links = connect_engine_network(b);
      Disconnect disconnect{links};
      sigset_t forwarded = forwarded_signals(), old;
      sigprocmask(SIG_BLOCK, &forwarded, &old);
      pid_t host = getpid();
      Starting worker = start_child("the sandbox", [&](const std::function<void()>& up) {
        sigprocmask(SIG_SETMASK, &old, nullptr);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != host) return sandbox::kExitKiln;
        json extra = {{"bundle", b.dir},
                      {"annotations", b.annotations},
                      {"vcpus", b.run.cpus},
                      {"memory_mib", b.run.memory}};
        if (!links.empty()) extra["network"] = recorded_network(b.netns, links);
        b.run.host_pid = host;
        b.run.on_created = [&] {
          write_atomically(reg.dir(o.id) / kOciFile, extra.dump() + "\n");
          up();
        };
        return sandbox::run(b.run);
      });
      pid_t pid = worker.pid;
      try {
        enter_container_view(b, o.no_pivot);
      } catch (...) {
        ::kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        throw;
      }
      await_ready("the sandbox", std::move(worker));  // reaps it if it fails
      ready();
      return forward_until_exit(pid, forwarded);
    });
  } catch (const kiln::Error&) {
    std::error_code ec;
    fs::remove_all(reg.dir(o.id), ec);  // nothing of a container that never was stays
    throw;
  }
  if (!o.pid_file.empty()) write_atomically(o.pid_file, std::to_string(child));
  return 0;
}

int exec(const Globals& g, const ExecOptions& o) {
  Registry reg(g.root);
  Record r = read_container(reg, o.id);
  std::string st = oci_status(reg, r);
  if (st != "running" && st != "created")
    throw kiln::Error("container " + o.id + " is " + st + ": nothing to exec in");
  agent::Start s;
  if (!o.process_file.empty()) {
    if (!o.command.empty()) throw UsageError("exec: --process and a command line conflict");
    s = load_process(o.process_file);
  } else {
    if (o.command.empty()) throw UsageError("exec: a command (or --process FILE) is required");
    s.argv = o.command;
    s.env = r.env;
    for (const auto& kv : o.env) {
      if (kv.find('=') == std::string::npos) throw UsageError("--env " + kv + ": want K=V");
      s.env.push_back(kv);
    }
    s.cwd = o.cwd.empty() ? r.cwd : o.cwd;
    if (s.cwd[0] != '/') throw UsageError("--cwd " + s.cwd + ": must be absolute");
    s.uid = r.uid;
    s.gid = r.gid;
    if (!o.user.empty()) std::tie(s.uid, s.gid) = sandbox::parse_numeric_user(o.user);
    s.terminal = o.tty;
  }
  sandbox::AttachOptions attach{true, s.terminal};
  UniqueFd slave;
  if (s.terminal) {
    if (o.console_socket.empty()) throw UsageError("exec with a terminal needs --console-socket");
    slave = open_console(o.console_socket, s.rows, s.cols);
  }
  std::string uds = (reg.dir(o.id) / "vsock").string();
  if (!o.detach) {
    if (slave) {
      setsid();
      take_terminal(slave);
    }
    UniqueFd signals = sandbox::forwarded_signals();
    return sandbox::exec_process(uds, s, attach, signals.get(), [&] {
      if (!o.pid_file.empty()) write_atomically(o.pid_file, std::to_string(getpid()));
    });
  }
  pid_t child = fork_until_ready("the exec'd process", [&](const std::function<void()>& ready) {
    take_terminal(slave);
    log_to_file_only();  // this process's stderr is the exec'd process's
    UniqueFd signals = sandbox::forwarded_signals();
    return sandbox::exec_process(uds, s, attach, signals.get(), ready);
  });
  if (!o.pid_file.empty()) write_atomically(o.pid_file, std::to_string(child));
  return 0;
}

// PATCH /vm {"state": STATE} on container `id`'s VMM, which must be `from` now.
int set_vm_state(const Globals& g, const std::string& id, const char* from, const char* state) {
  Registry reg(g.root);
  Record r = read_container(reg, id);
  if (std::string st = oci_status(reg, r); st != from)
    throw kiln::Error("container " + id + " is " + st + ", not " + from);
  auto reply = vmm_api_call(api_socket(reg, id), "PATCH", "/vm", json{{"state", state}}.dump());
  if (reply.status != 204) {
    json fault = json::parse(reply.body, nullptr, false);
    throw kiln::Error("the VMM refused to make container " + id + " " + state + ": " +
                      (fault.is_object() ? fault.value("fault_message", reply.body) : reply.body));
  }
  return 0;
}

int pause(const Globals& g, const std::string& id) {
  return set_vm_state(g, id, "running", "Paused");
}

int resume(const Globals& g, const std::string& id) {
  return set_vm_state(g, id, "paused", "Resumed");
}

int start(const Globals& g, const std::string& id) {
  Registry reg(g.root);
  Record r = read_container(reg, id);
  std::string st = oci_status(reg, r);
  if (st != "created") throw kiln::Error("container " + id + " is " + st + ", not created");
  sandbox::request_start((reg.dir(id) / "control").string());
  return 0;
}

int state(const Globals& g, const std::string& id) {
  Registry reg(g.root);
  std::printf("%s\n", state_of(reg, read_container(reg, id)).dump(2).c_str());
  return 0;
}

int kill(const Globals& g, const std::string& id, const std::string& signal) {
  int sig = parse_signal(signal, "SIGNAL");
  Registry reg(g.root);
  Record r = read_container(reg, id);
  if (oci_status(reg, r) == "stopped") throw kiln::Error("container " + id + " is not running");
  sandbox::request_signal((reg.dir(id) / "control").string(), sig);
  return 0;
}

int remove(const Globals& g, const std::string& id, bool force) {
  Registry reg(g.root);
  sandbox::check_name(id);
  if (!fs::exists(reg.dir(id))) throw kiln::Error("container " + id + " does not exist");
  std::optional<Record> r;
  try {
    r = reg.read(id);
  } catch (const std::exception&) {
    // A directory without a readable record only holds the name.
  }
  std::string st = r ? oci_status(reg, *r) : "stopped";
  if (st != "stopped") {
    // As runc: a created container is deleted (its process killed); a running or paused one
    // needs force.
    if ((st == "running" || st == "paused") && !force)
      throw kiln::Error("container " + id + " is " + st + ": stop it first, or delete --force");
    if (st == "paused") {
      ::kill(r->pid, SIGKILL);  // its guest cannot take a signal: the process goes
    } else {
      try {
        sandbox::request_signal((reg.dir(id) / "control").string(), SIGKILL);
      } catch (const kiln::Error&) {
        ::kill(r->pid, SIGKILL);  // its control socket is gone or wedged: the process goes
      }
    }
    if (!wait_gone(*r, 20s)) {
      ::kill(r->pid, SIGKILL);
      if (!wait_gone(*r, 5s)) throw kiln::Error("container " + id + " did not stop");
    }
  }
  disconnect_recorded(reg, id);
  reg.remove(id);
  return 0;
}

int ps(const Globals& g, const std::string& id, const std::string& format,
       const std::vector<std::string>& ps_args) {
  Registry reg(g.root);
  Record r = read_container(reg, id);
  std::vector<pid_t> pids;
  if (oci_status(reg, r) != "stopped") pids = process_tree(r.pid);
  if (format == "json") {
    if (!ps_args.empty())
      throw UsageError("ps: ps options (" + ps_args[0] + "...) are for --format table");
    std::printf("%s\n", json(pids).dump().c_str());
    return 0;
  }
  std::printf("%s", ps_table(pids, ps_args).c_str());
  return 0;
}

int update(const Globals& g, const std::string& id, const std::string& resources) {
  Registry reg(g.root);
  Record r = read_container(reg, id);
  if (oci_status(reg, r) == "stopped") throw kiln::Error("container " + id + " is stopped");
  json extra = read_extra(reg, id);
  if (!extra.value("vcpus", json()).is_number_unsigned() ||
      !extra.value("memory_mib", json()).is_number_unsigned())
    throw kiln::Error("container " + id + ": its size is not recorded (created by an older " +
                      "kiln-oci)");
  sandbox::RunOptions current;
  current.cpus = extra["vcpus"].get<unsigned>();
  current.memory = extra["memory_mib"].get<unsigned>();
  load_resources_update(resources, current);  // the size it has: nothing to change
  return 0;
}

int list(const Globals& g, const std::string& format, bool quiet) {
  Registry reg(g.root);
  json all = json::array();
  for (const Record& r : reg.list()) all.push_back(state_of(reg, r));
  if (format == "json") {
    std::printf("%s\n", all.dump().c_str());
    return 0;
  }
  if (!quiet)
    std::printf("%-24s %-8s %-10s %-40s %-22s %s\n", "ID", "PID", "STATUS", "BUNDLE", "CREATED",
                "OWNER");
  for (const auto& s : all) {
    if (quiet) {
      std::printf("%s\n", s["id"].get<std::string>().c_str());
      continue;
    }
    std::printf("%-24s %-8d %-10s %-40s %-22s %s\n", s["id"].get<std::string>().c_str(),
                s["pid"].get<int>(), s["status"].get<std::string>().c_str(),
                s["bundle"].get<std::string>().c_str(), s["created"].get<std::string>().c_str(),
                geteuid() == 0 ? "root" : std::to_string(geteuid()).c_str());
  }
  return 0;
}

int features() {
  json f = {{"ociVersionMin", "1.0.0"},
            {"ociVersionMax", "1.1.0"},
            {"hooks", json::array()},
            {"mountOptions",
             {"bind", "rbind", "ro", "rw", "rprivate", "private", "nosuid", "nodev", "noexec"}},
            {"annotations", {{"io.kiln.runtime", "microvm"}}}};
  std::printf("%s\n", f.dump(2).c_str());
  return 0;
}

}  // namespace kiln::oci
