#include "sandbox/sandbox_run.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include "base/error.h"
#include "image/image_cache.h"
#include "image/image_source.h"
#include "image/run_spec.h"
#include "sandbox/agent_client.h"

extern char** environ;

namespace kiln::sandbox {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr int kExitKiln = 125;

struct Volume {
  std::string host, guest;
  bool read_only = false;
};

struct RunOptions {
  std::string kernel, initrd, root;
  std::vector<std::string> env, command, volumes;  // volumes: -v as given
  std::vector<Volume> shares;                      // the -v values, parsed
  std::optional<std::string> workdir, user;
  bool interactive = false;
  bool tty = false;
  bool timings = false;
  std::string console_log;  // empty: a temporary file, shown only when the VM fails
  unsigned cpus = 1, memory = 256, boot_timeout = 300;
};

// -v HOSTDIR:GUESTDIR[:ro]. GUESTDIR goes on the guest's kernel command line, so it must be
// one word: absolute, no whitespace, no ':' and no '.'/'..' components.
Volume parse_volume(const std::string& v) {
  auto bad = [&v](const std::string& why) {
    return kiln::Error("-v " + v + ": " + why + " (want HOSTDIR:GUESTDIR[:ro])");
  };
  Volume vol;
  auto c1 = v.find(':');
  if (c1 == std::string::npos || c1 == 0) throw bad("no host directory");
  vol.host = v.substr(0, c1);
  std::string rest = v.substr(c1 + 1);
  if (auto c2 = rest.find(':'); c2 != std::string::npos) {
    std::string opt = rest.substr(c2 + 1);
    if (opt != "ro" && opt != "rw") throw bad("unknown option '" + opt + "' (ro or rw)");
    vol.read_only = opt == "ro";
    rest.resize(c2);
  }
  if (rest.size() < 2 || rest[0] != '/') throw bad("GUESTDIR must be absolute and not /");
  if (rest.find_first_of(" \t\n\r") != std::string::npos || rest.size() > 1024)
    throw bad("GUESTDIR must not contain whitespace");
  for (const auto& part : fs::path(rest))
    if (part == "." || part == "..") throw bad("GUESTDIR must not contain '.' or '..'");
  if (vol.host.find(',') != std::string::npos) throw bad("HOSTDIR must not contain ','");
  if (!fs::is_directory(vol.host)) throw bad("HOSTDIR " + vol.host + " is not a directory");
  vol.guest = rest;
  return vol;
}

enum class RootKind { kDirectory, kDisk, kImage };

// An ext4 file system has its superblock magic 0xEF53 at byte 1080.
bool is_ext4(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char m[2] = {};
  return f.seekg(1080) && f.read(m, 2) && m[0] == '\x53' && m[1] == '\xef';
}

// A directory with an OCI layout's "oci-layout" or a docker-save tree's "manifest.json" is an
// image; another directory is a root to share; an ext4 file is a disk; anything else (a tar,
// or PATH:TAG) is tried as an image archive.
RootKind root_kind(const std::string& root) {
  if (fs::is_directory(root))
    return fs::exists(fs::path(root) / "oci-layout") || fs::exists(fs::path(root) / "manifest.json")
               ? RootKind::kImage
               : RootKind::kDirectory;
  if (fs::is_regular_file(root) && is_ext4(root)) return RootKind::kDisk;
  return RootKind::kImage;
}

// -u UID[:GID] for a directory or disk root, numeric (GID defaults to UID).
std::pair<uint32_t, uint32_t> parse_user(const std::string& v) {
  auto number = [&v](const std::string& s) {
    if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos)
      throw kiln::Error("-u " + v +
                        ": want numeric UID[:GID] (names are resolved only in container images)");
    unsigned long n = std::stoul(s);
    if (n >= 0xffffffffUL) throw kiln::Error("-u " + v + ": id out of range");
    return static_cast<uint32_t>(n);
  };
  auto colon = v.find(':');
  uint32_t uid = number(v.substr(0, colon));
  return {uid, colon == std::string::npos ? uid : number(v.substr(colon + 1))};
}

// What the agent starts, and the root the VM gets: the command line as given for a directory
// or a disk; an image's defaults (Entrypoint, Cmd, Env, WorkingDir, User) under the flags for
// an image, whose cached root is shared read-only under a tmpfs overlay (runs never change it).
struct Workload {
  agent::Start start;
  std::vector<std::string> vm_args;
  std::string cmdline;
};

Workload plan_workload(const RunOptions& o) {
  Workload w;
  agent::Start& s = w.start;
  RootKind kind = root_kind(o.root);
  switch (kind) {
    case RootKind::kDirectory:
    case RootKind::kDisk: {
      if (o.command.empty()) throw kiln::Error("CMD is required unless ROOT is a container image");
      // kiln run's --fs/--disk values are comma-separated key=value lists.
      if (o.root.find(',') != std::string::npos)
        throw kiln::Error("ROOT " + o.root + ": a directory or disk root must not contain ','");
      bool dir = kind == RootKind::kDirectory;
      w.vm_args = dir ? std::vector<std::string>{"--fs", "tag=kiln-root,path=" + o.root}
                      : std::vector<std::string>{"--disk", o.root};
      w.cmdline = dir ? " kiln.root=kiln-root kiln.rootfstype=virtiofs"
                      : " kiln.root=/dev/vda kiln.rootfstype=ext4";
      s.argv = o.command;
      s.env = {image::kDefaultPath, "HOME=/root"};
      for (const auto& e : o.env) s.env.push_back(e);
      s.cwd = o.workdir.value_or("/");
      if (o.user) std::tie(s.uid, s.gid) = parse_user(*o.user);
      break;
    }
    case RootKind::kImage: {
      image::UnpackedImage img = image::open_image(o.root);
      image::RunOverrides ov;
      ov.command = o.command;
      ov.env = o.env;
      ov.working_dir = o.workdir;
      ov.user = o.user;
      image::RunSpec spec = image::make_run_spec(img.config, ov, img.rootfs);
      if (img.rootfs.find(',') != std::string::npos)
        throw kiln::Error("the image cache " + img.rootfs + " contains ','; set KILN_CACHE");
      w.vm_args = {"--fs", "tag=kiln-root,path=" + img.rootfs + ",ro"};
      w.cmdline = " kiln.root=kiln-root kiln.rootfstype=virtiofs kiln.overlay=tmpfs";
      s.argv = spec.argv;
      s.env = spec.env;
      s.cwd = spec.cwd;
      s.uid = spec.user.uid;
      s.gid = spec.user.gid;
      s.groups = spec.user.groups;
      break;
    }
  }
  return w;
}

fs::path self_dir() {
  return fs::read_symlink("/proc/self/exe").parent_path();
}

// The host terminal in raw mode while the workload has its own terminal (keys go through to
// it as typed: ^C is the guest's), restored on scope exit.
class RawMode {
 public:
  explicit RawMode(int fd) : fd_(fd) {
    if (tcgetattr(fd_, &saved_) < 0) throw_errno("tcgetattr");
    termios raw = saved_;
    cfmakeraw(&raw);
    if (tcsetattr(fd_, TCSANOW, &raw) < 0) throw_errno("tcsetattr");
  }
  ~RawMode() { tcsetattr(fd_, TCSANOW, &saved_); }
  RawMode(const RawMode&) = delete;
  RawMode& operator=(const RawMode&) = delete;

 private:
  int fd_;
  termios saved_;
};

// A temporary directory for the vsock socket and the console log, removed at the end.
class TempDir {
 public:
  TempDir() {
    const char* t = getenv("TMPDIR");
    std::string tmpl = std::string(t && *t ? t : "/tmp") + "/kiln-sandbox-XXXXXX";
    if (!mkdtemp(tmpl.data())) throw_errno("mkdtemp " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The `kiln run` child: its console goes to `log`, its stdin is /dev/null.
pid_t spawn_vm(const std::vector<std::string>& args, const std::string& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  // Its own process group, so a terminal's ^C reaches the workload (through the agent) rather
  // than stopping the VM; default signal mask and dispositions.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid;
  int err = posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  if (err) throw_errno("start the VM (kiln run)", err);
  return pid;
}

std::string tail_of(const std::string& path, size_t max = 2000) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  std::string t = s.str();
  return t.size() > max ? "..." + t.substr(t.size() - max) : t;
}

// Waits up to `timeout` for the VM to end; kills it after that. Returns its exit status.
int wait_vm(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(20ms);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int run(const RunOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  auto ms_since = [&t0] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  // SIGINT, SIGTERM and SIGHUP go to the workload (read through a signalfd while pumping).
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGWINCH}) sigaddset(&set, sig);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  UniqueFd signals(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signals) throw_errno("signalfd");
  TempDir dir;
  std::string uds = (dir.path() / "vsock").string();
  std::string log = o.console_log.empty() ? (dir.path() / "console.log").string() : o.console_log;
  std::vector<std::string> args{"kiln",     "run",
                                "--kernel", o.kernel,
                                "--initrd", o.initrd,
                                "--vsock",  "cid=3,uds=" + uds,
                                "--cpus",   std::to_string(o.cpus),
                                "--memory", std::to_string(o.memory)};
  Workload w = plan_workload(o);
  args.insert(args.end(), w.vm_args.begin(), w.vm_args.end());
  std::string cmdline = "console=ttyS0 reboot=k panic=1 quiet" + w.cmdline;
  for (size_t i = 0; i < o.shares.size(); ++i) {
    const Volume& v = o.shares[i];
    std::string tag = "kiln-v" + std::to_string(i);
    args.insert(args.end(),
                {"--fs", "tag=" + tag + ",path=" + v.host + (v.read_only ? ",ro" : "")});
    cmdline += " kiln.volume=" + tag + ":" + v.guest + (v.read_only ? ":ro" : "");
  }
  args.insert(args.end(), {"--cmdline", cmdline});
  pid_t vm = spawn_vm(args, log);
  struct Reap {
    pid_t pid;
    ~Reap() {
      if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    }
  } reap{vm};
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
  int status;
  try {
    UniqueFd stream = AgentClient::connect_vsock(uds, agent::kDefaultPort,
                                                 std::chrono::seconds(o.boot_timeout), vm_running);
    AgentClient client(std::move(stream));
    client.forward_signals(signals.get());
    agent::Hello hello = client.handshake(10s);
    double ready_ms = ms_since();
    agent::Start s = w.start;
    std::optional<RawMode> raw;
    if (o.tty) {
      s.terminal = true;
      winsize ws{};
      if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
        s.rows = ws.ws_row;
        s.cols = ws.ws_col;
      }
      s.env.push_back("TERM=" + std::string(getenv("TERM") ? getenv("TERM") : "xterm"));
      if (o.interactive && isatty(STDIN_FILENO)) raw.emplace(STDIN_FILENO);
    }
    client.start(s, {o.interactive ? STDIN_FILENO : -1, STDOUT_FILENO, STDERR_FILENO});
    double started_ms = ms_since();
    status = client.wait(s.id).status();
    if (o.timings)
      std::fprintf(stderr,
                   "kiln sandbox: agent ready %.1f ms (kernel boot to agent %.1f ms, agent "
                   "start-up %.1f ms), workload started %.1f ms, exited %.1f ms\n",
                   ready_ms, hello.boot_ns / 1e6, hello.startup_ns / 1e6, started_ms, ms_since());
  } catch (const StartError& e) {
    std::fprintf(stderr, "kiln sandbox: %s\n", e.what());
    return std::string(e.what()).find("No such file") != std::string::npos ? 127 : 126;
  } catch (const agent::ProtocolError& e) {
    throw vm_failed(std::string("the agent broke the protocol: ") + e.what());
  } catch (const kiln::Error& e) {
    throw vm_failed(e.what());
  }
  // The connection closed (client gone): the agent powers the VM off; kiln run exits 0.
  int vm_status = wait_vm(vm, 60s);
  reap.pid = 0;
  if (vm_status != 0) {
    std::fprintf(stderr, "kiln sandbox: the VM did not power off cleanly (kiln run: %d)\n",
                 vm_status);
    if (status == 0) status = kExitKiln;
  }
  return status;
}

}  // namespace

int sandbox_main(int argc, char** argv) {
  CLI::App app{"Run workloads in microVMs booted with kiln-agent", "kiln sandbox"};
  app.require_subcommand(1);
  RunOptions o;
  CLI::App* r = app.add_subcommand("run", "Run CMD in a fresh microVM with ROOT as its root");
  r->add_option("--kernel", o.kernel, "guest kernel (default: guest-kernel/vmlinux beside kiln)");
  r->add_option("--initrd", o.initrd,
                "agent initramfs (default: agent/kiln-agent.cpio beside kiln)");
  r->add_option("-e,--env", o.env, "K=V in the workload's environment")
      ->check([](const std::string& v) {
        return v.find('=') == std::string::npos || v[0] == '=' ? "-e needs K=V" : "";
      })
      ->allow_extra_args(false);
  r->add_option("-w,--workdir", o.workdir, "the workload's working directory (absolute)")
      ->check([](const std::string& v) {
        return v.empty() || v[0] != '/' ? "-w needs an absolute path" : "";
      });
  r->add_flag("-i,--interactive", o.interactive, "connect Kiln's stdin to the workload");
  r->add_flag("--timings", o.timings,
              "print the phases' times on stderr: agent ready (with the agent's own report), "
              "workload started, exited (from Kiln's start)");
  r->add_flag("-t,--tty", o.tty,
              "give the workload a terminal (stdout and stderr joined; the host terminal in raw "
              "mode with -i; its size, and SIGWINCH)");
  r->add_option("--console-log", o.console_log,
                "write the guest's console (and kiln run's log) here");
  r->add_option("--cpus", o.cpus, "vCPUs")->check(CLI::Range(1, 254));
  r->add_option("--memory", o.memory, "guest memory in MiB")->check(CLI::Range(32, 65536));
  r->add_option("--boot-timeout", o.boot_timeout, "seconds to wait for the agent")
      ->check(CLI::Range(1, 3600));
  r->add_option("-u,--user", o.user,
                "UID[:GID] to run the workload as (GID defaults to UID); with an image also "
                "USER[:GROUP] from its /etc/passwd and /etc/group");
  r->add_option("-v,--volume", o.volumes,
                "HOSTDIR:GUESTDIR[:ro]: share a host directory at GUESTDIR (virtio-fs)")
      ->allow_extra_args(false);
  r->add_option("ROOT", o.root,
                "the workload's root: a directory (shared over virtio-fs), an ext4 image (the "
                "disk /dev/vda), or a container image: an OCI layout directory or an "
                "oci-archive/docker-archive tar (PATH[:TAG]; unpacked once into the cache)")
      ->required();
  r->add_option("CMD", o.command,
                "the command and its arguments (after --); an image's Entrypoint/Cmd by default");
  // Kiln's own info lines (an image unpacked, ...) would mix into the workload's stderr:
  // warnings and errors only.
  spdlog::set_level(spdlog::level::warn);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitKiln;
  }
  try {
    if (!fs::exists(o.root) && !fs::exists(image::parse_image_ref(o.root).path))
      throw kiln::Error("ROOT " + o.root + " does not exist");
    if (o.volumes.size() > 16) throw kiln::Error("-v: at most 16 volumes");
    for (const auto& v : o.volumes) o.shares.push_back(parse_volume(v));
    if (o.kernel.empty()) o.kernel = (self_dir() / "guest-kernel" / "vmlinux").string();
    if (o.initrd.empty()) o.initrd = (self_dir() / "agent" / "kiln-agent.cpio").string();
    for (const auto& [what, path] : {std::pair{"--kernel", o.kernel}, {"--initrd", o.initrd}})
      if (!fs::is_regular_file(path))
        throw kiln::Error(std::string(what) + " " + path +
                          " is not a file (the kernel: scripts/build-guest-kernel.sh --out "
                          "build/guest-kernel; the initramfs: ninja -C build)");
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln sandbox: %s\n", e.what());
    return kExitKiln;
  }
}

}  // namespace kiln::sandbox
