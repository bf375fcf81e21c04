// `kiln sandbox run`: boots a microVM with kiln-agent as PID 1 (a `kiln run` child), starts the
// workload through the agent, serves the sandbox's control socket, records it in the registry.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/unique_fd.h"
#include "sandbox/agent_client.h"
#include "sandbox/commands.h"
#include "sandbox/control.h"
#include "sandbox/registry.h"
#include "sandbox/vm_process.h"
#include "sandbox/warm.h"

extern char** environ;

namespace kiln::sandbox {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Signals whose default action neither ends nor stops a process.
bool ignored_by_default(int sig) {
  return sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH || sig == SIGSTOP ||
         sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The sandbox's registry entry for as long as `run` runs: at the end it is removed (--rm) or
// kept as exited with the status, its sockets gone.
class Entry {
 public:
  Entry(Registry& reg, Record rec, bool remove)
      : reg_(reg), rec_(std::move(rec)), remove_(remove), dir_(reg.create(rec_.name)) {
    reg_.write(rec_);
  }
  ~Entry() {
    try {
      if (remove_) {
        reg_.remove(rec_.name);
        return;
      }
      rec_.status = Status::kExited;
      rec_.exit_status = status;
      reg_.write(rec_);
      std::error_code ec;
      fs::remove(dir_ / "vsock", ec);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "kiln sandbox: recording the end of %s: %s\n", rec_.name.c_str(),
                   e.what());
    }
  }
  Entry(const Entry&) = delete;
  Entry& operator=(const Entry&) = delete;

  const fs::path& dir() const { return dir_; }
  void created() {
    rec_.status = Status::kCreated;
    reg_.write(rec_);
  }
  void running() {
    rec_.status = Status::kRunning;
    reg_.write(rec_);
  }
  int status = kExitKiln;

 private:
  Registry& reg_;
  Record rec_;
  bool remove_;
  fs::path dir_;
};

}  // namespace

int run(const RunOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  auto ms_since = [&t0] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  UniqueFd signals = forwarded_signals();
  // Bad input is refused before anything is recorded.
  Workload w = o.planned ? *o.planned : plan_workload(o.workload);
  if (o.warm && !w.root_disk.empty())
    throw UsageError("--warm: a disk root (" + w.root_disk +
                     ") is not restored on a warm sandbox yet; share a directory or an image");
  Record rec;
  rec.name = o.name.value_or(random_name());
  rec.pid = o.host_pid > 0 ? o.host_pid : getpid();
  rec.pid_start = process_start_time(rec.pid);
  rec.root = o.workload.root;
  rec.command = w.start.argv;
  rec.created = utc_now();
  rec.env = w.start.env;
  rec.cwd = w.start.cwd;
  rec.uid = w.start.uid;
  rec.gid = w.start.gid;
  rec.groups = w.start.groups;
  rec.user_root = w.user_root;
  Registry reg(o.state_root.empty() ? Registry::default_root() : fs::path(o.state_root));
  Entry entry(reg, rec, o.remove);

  std::string uds = (entry.dir() / "vsock").string();
  std::string log = o.console_log.empty() ? (entry.dir() / "console.log").string() : o.console_log;
  std::string api_sock = o.vmm_api ? (entry.dir() / "api.sock").string() : "";
  ControlServer control((entry.dir() / "control").string());
  // The shares (root, volumes, the directories of file binds) and the agent's parameters.
  std::vector<Share> shares;
  if (w.root_share) shares.push_back(*w.root_share);
  std::string params = w.cmdline;
  if (!o.hostname.empty()) params += " kiln.hostname=" + o.hostname;
  for (size_t i = 0; i < o.volumes.size(); ++i) {
    const Volume& v = o.volumes[i];
    std::string tag = "kiln-v" + std::to_string(i);
    shares.push_back({tag, v.host, v.read_only});
    params += " kiln.volume=" + tag + ":" + v.guest + (v.read_only ? ":ro" : "");
  }
  for (const std::string& t : o.tmpfs) params += " kiln.tmpfs=" + t;
  // File binds: each directory shared once, read-only (see FileBind).
  std::vector<std::string> file_dirs;
  for (const FileBind& f : o.files) {
    fs::path p(f.host);
    std::string dir = p.parent_path().string(), name = p.filename().string();
    auto it = std::find(file_dirs.begin(), file_dirs.end(), dir);
    std::string tag = "kiln-f" + std::to_string(it - file_dirs.begin());
    if (it == file_dirs.end()) {
      file_dirs.push_back(dir);
      shares.push_back({tag, dir, true});
    }
    params += " kiln.bind=" + tag + ":" + name + ":" + f.guest + ":ro";
  }
  std::vector<std::string> args;
  std::optional<WarmSnapshot> warm;
  if (o.warm) {
    // The snapshot's NICs have the pool's MACs: each takes the sandbox's (or a random one).
    std::vector<std::string> taps;
    for (size_t i = 0; i < o.nets.size(); ++i) {
      const SandboxNet& net = o.nets[i];
      params += " kiln.setmac=" + warm_pool_mac(i) + "," +
                (net.mac.empty() ? random_mac() : net.mac) + net.cmdline();
      taps.push_back(net.tap);
    }
    warm = warm_snapshot({o.kernel, o.initrd, o.cpus, o.memory, shares, o.nets.size()},
                         o.boot_timeout);
    args = warm_restore_args(*warm, uds, shares, taps, api_sock);
  } else {
    args = {"kiln",     "run",
            "--kernel", o.kernel,
            "--initrd", o.initrd,
            "--vsock",  "cid=3,uds=" + uds,
            "--cpus",   std::to_string(o.cpus),
            "--memory", std::to_string(o.memory)};
    if (!w.root_disk.empty()) args.insert(args.end(), {"--disk", w.root_disk});
    for (const Share& sh : shares)
      args.insert(args.end(),
                  {"--fs", "tag=" + sh.tag + ",path=" + sh.path + (sh.read_only ? ",ro" : "")});
    if (!api_sock.empty()) args.insert(args.end(), {"--api-sock", api_sock});
    for (const auto& net : o.nets) {
      auto net_args = net.vm_args();
      args.insert(args.end(), net_args.begin(), net_args.end());
      params += net.cmdline();
    }
    args.insert(args.end(), {"--cmdline", "console=ttyS0 reboot=k panic=1 quiet" + params});
  }
  pid_t vm = spawn_vm(args, log);
  VmReaper reap{vm};
  int vm_exit = -1;  // set when kiln run ended while Kiln waited for the agent
  auto vm_failed = [&](const std::string& what) {
    int st = vm_exit >= 0 ? vm_exit : wait_vm(vm, 1ms);
    reap.pid = 0;
    std::string console = tail_of(log);
    return kiln::Error(what + (st >= 0 ? "; kiln run exited " + std::to_string(st) : "") +
                       "; its console:\n" + (console.empty() ? "(empty)" : console));
  };
  auto vm_running = [&] {
    int st;
    if (waitpid(vm, &st, WNOHANG) != vm) return true;
    vm_exit = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  };
  try {
    // A restored guest resets the connections it had when it handles the vsock transport
    // reset, which may come after this connection was made: a warm sandbox's connection closed
    // before hello is made again (a few times).
    std::optional<AgentClient> connected;
    agent::Hello hello;
    for (int attempt = 1;; ++attempt) {
      connected.emplace(AgentClient::connect_vsock(
          uds, agent::kDefaultPort, std::chrono::seconds(o.boot_timeout), vm_running));
      try {
        hello = connected->handshake(10s);
        break;
      } catch (const ClosedError&) {
        if (!warm || attempt == 5) throw;
        std::this_thread::sleep_for(20ms);
      }
    }
    AgentClient& client = *connected;
    client.forward_signals(signals.get());
    if (warm) client.configure(warm_configure(params), 60s);
    double ready_ms = ms_since(), started_ms = 0, start_ms = 0;  // warm: set up too
    std::optional<uint32_t> main_id;
    bool start_requested = !o.wait_for_start;
    int gate_signal = 0;  // a signal that ended the sandbox at its start gate
    ControlHandlers handlers;
    // kiln sandbox kill: the signal goes to the workload; a workload still there 10 s after
    // SIGKILL means the guest does not do what it is told, and the VM is stopped. At the start
    // gate there is no workload yet: a signal that would end a process ends the sandbox.
    handlers.on_signal = [&](int sig) -> std::string {
      if (!main_id && !start_requested) {
        if (!ignored_by_default(sig)) gate_signal = sig;
        return "";
      }
      if (!main_id) return "the workload is starting; try again";
      client.signal(*main_id, sig);
      if (sig == SIGKILL) client.set_deadline(std::chrono::steady_clock::now() + 10s);
      return "";
    };
    if (o.wait_for_start)
      handlers.on_start = [&]() -> std::string {
        if (start_requested) return "the workload was started already";
        if (gate_signal) return "the sandbox is stopping (it was signalled)";
        start_requested = true;
        start_ms = ms_since();
        entry.running();
        return "";
      };
    client.watch(control.fd(), [&] { control.serve_one(handlers); });
    if (o.wait_for_start) {
      entry.created();
      if (o.on_created) o.on_created();
      client.pump_until(
          [&] { return start_requested || gate_signal || client.unforwarded_signal(); });
      if (!start_requested) {
        int sig = gate_signal ? gate_signal : client.unforwarded_signal();
        return entry.status = 128 + sig;  // Reap stops the VM
      }
    } else {
      entry.running();
    }
    try {
      entry.status = attach(client, w.start, o.attach, [&](uint32_t id) {
        main_id = id;
        started_ms = ms_since();
      });
    } catch (const DeadlineError&) {
      std::fprintf(stderr,
                   "kiln sandbox: the workload did not end within 10 s of SIGKILL; "
                   "stopping the VM\n");
      return entry.status = 128 + SIGKILL;  // Reap kills the VM
    }
    // The sandbox ends with its workload: processes started by exec are ended too.
    client.shutdown();
    if (o.timings && warm)
      std::fprintf(stderr,
                   "kiln sandbox: agent ready %.1f ms (restored warm, workload root set up), "
                   "workload started %.1f ms, exited %.1f ms\n",
                   ready_ms, started_ms, ms_since());
    else if (o.timings)
      std::fprintf(stderr,
                   "kiln sandbox: agent ready %.1f ms (kernel boot to agent %.1f ms, agent "
                   "start-up %.1f ms), workload started %.1f ms, exited %.1f ms\n",
                   ready_ms, hello.boot_ns / 1e6, hello.startup_ns / 1e6, started_ms, ms_since());
    if (!o.timings_file.empty()) {
      // One line, appended whole (O_APPEND): containers may share the file.
      double clock_ms =  // CLOCK_MONOTONIC, as steady_clock is on Linux
          std::chrono::duration<double, std::milli>(t0.time_since_epoch()).count();
      std::string line = nlohmann::json{{"name", rec.name},
                                        {"monotonic_start_ms", clock_ms},
                                        {"warm", warm.has_value()},
                                        {"agent_ready_ms", ready_ms},
                                        {"kernel_boot_ms", hello.boot_ns / 1e6},
                                        {"agent_startup_ms", hello.startup_ns / 1e6},
                                        {"start_requested_ms", start_ms},
                                        {"started_ms", started_ms},
                                        {"exited_ms", ms_since()}}
                             .dump() +
                         "\n";
      UniqueFd f(open(o.timings_file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644));
      if (!f || write(f.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()))
        std::fprintf(stderr, "kiln sandbox: cannot write the timings to %s: %s\n",
                     o.timings_file.c_str(), std::strerror(errno));
    }
  } catch (const agent::ProtocolError& e) {
    throw vm_failed(std::string("the agent broke the protocol: ") + e.what());
  } catch (const kiln::Error& e) {
    throw vm_failed(e.what());
  }
  // The agent powers the VM off; kiln run exits 0.
  int vm_status = wait_vm(vm, 60s);
  reap.pid = 0;
  if (vm_status != 0) {
    std::fprintf(stderr, "kiln sandbox: the VM did not power off cleanly (kiln run: %d)\n",
                 vm_status);
    if (entry.status == 0) entry.status = kExitKiln;
  }
  return entry.status;
}

}  // namespace kiln::sandbox
