// kiln-agent: PID 1 of a Kiln sandbox guest, started from the agent's initramfs as /init.
// Mounts the API file systems and the workload's root (agent/boot_config.h), switches into it,
// brings up lo (with kiln.warm=1 the root and the rest wait for the host's configure: a pooled
// snapshot is taken there), then serves the host over vsock (agent/core/agent.h) as a real init:
// reaps every orphan, forwards SIGTERM/SIGINT to the workload, and powers the VM off (ACPI S5, so
// `kiln run` exits 0) once a process ran and nothing is left: no process, no connection.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/random.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "agent/boot_config.h"
#include "agent/core/agent.h"
#include "agent/network.h"

namespace kiln::agent {
namespace {

uint64_t now_ns(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

[[noreturn]] void fail(const std::string& what, int err = errno) {
  throw std::runtime_error(what + ": " + std::strerror(err));
}

void mount_fs(const char* source, const char* target, const char* type, unsigned long flags,
              const char* data = nullptr) {
  if (mkdir(target, 0755) < 0 && errno != EEXIST) fail(std::string("mkdir ") + target);
  if (mount(source, target, type, flags, data) < 0)
    fail(std::string("mount ") + type + " on " + target);
}

std::string read_file(const char* path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Waits for the root's block device (virtio probing may still run when init starts).
void wait_for_device(const std::string& path) {
  for (int i = 0; i < 500; ++i) {
    struct stat st;
    if (stat(path.c_str(), &st) == 0) return;
    usleep(10000);
  }
  throw std::runtime_error("root device " + path + " did not appear within 5 s " +
                           "(is the disk given to kiln, and is kiln.root= right?)");
}

// The workload's root at /newroot, then made "/": initramfs cannot pivot_root, so the new root
// is moved onto / and chrooted into (as switch_root does). /dev and /proc move along.
void switch_root(const BootConfig& cfg) {
  if (cfg.rootfstype != "virtiofs") wait_for_device(cfg.root);
  unsigned long flags = cfg.read_only || cfg.overlay ? MS_RDONLY : 0;
  const char* data = cfg.rootflags.empty() ? nullptr : cfg.rootflags.c_str();
  if (cfg.overlay) {
    // The shared root read-only at /lower, writes to /rw (a tmpfs), the union at /newroot.
    mount_fs(cfg.root.c_str(), "/lower", cfg.rootfstype.c_str(), flags, data);
    mount_fs("rw", "/rw", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755");
    for (const char* d : {"/rw/upper", "/rw/work"})
      if (mkdir(d, 0755) < 0) fail(std::string("mkdir ") + d);
    mount_fs("overlay", "/newroot", "overlay", 0,
             "lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work");
  } else {
    mount_fs(cfg.root.c_str(), "/newroot", cfg.rootfstype.c_str(), flags, data);
  }
  for (const char* d : {"dev", "proc"}) {
    std::string target = std::string("/newroot/") + d;
    if (mkdir(target.c_str(), 0755) < 0 && errno != EEXIST)
      fail("mkdir " + target + " (a read-only root needs /dev and /proc)");
    if (mount((std::string("/") + d).c_str(), target.c_str(), nullptr, MS_MOVE, nullptr) < 0)
      fail("move /" + std::string(d) + " into the new root");
  }
  unlink("/init");  // free the initramfs' copy (this process keeps its mapping)
  if (chdir("/newroot") < 0) fail("chdir /newroot");
  if (mount(".", "/", nullptr, MS_MOVE, nullptr) < 0) fail("move the new root onto /");
  if (chroot(".") < 0) fail("chroot");
  if (chdir("/") < 0) fail("chdir /");
}

// The rest of the API file systems, inside the new root. A read-only root without the mount
// points gets a clear error.
void mount_api_filesystems() {
  mount_fs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  mount_fs("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
  mount_fs("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  mount_fs("run", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755");
  mount_fs("tmp", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  // /dev/ptmx through devpts' own (devtmpfs' node is for the initial instance: the same one).
}

// An absolute directory and its parents (0755).
void mkdir_p(const std::string& dir) {
  std::string path;
  std::istringstream parts(dir);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    path += "/" + part;
    if (mkdir(path.c_str(), 0755) < 0 && errno != EEXIST) fail("mkdir " + path);
  }
}

size_t depth(const std::string& path) {
  return std::count(path.begin(), path.end(), '/');
}

// Copies the tree under directory `from` into directory `to` (tmpcopyup): directories, files,
// symbolic links, fifos and device nodes, with their owners and modes. The workload's own
// root, inside its own VM: bounded only in depth, to end a loop of bind mounts.
void copy_tree(int from, int to, const std::string& where, int level = 0) {
  if (level > 64) throw std::runtime_error("tmpcopyup: " + where + " is nested too deep");
  int dup_fd = dup(from);
  if (dup_fd < 0) fail("dup");
  std::unique_ptr<DIR, int (*)(DIR*)> dir(fdopendir(dup_fd), closedir);
  if (!dir) {
    close(dup_fd);
    fail("read " + where);
  }
  while (dirent* e = readdir(dir.get())) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (fstatat(from, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) fail("stat " + where + name);
    std::string path = where + name;
    if (S_ISDIR(st.st_mode)) {
      if (mkdirat(to, e->d_name, 0700) < 0) fail("mkdir " + path);
      UniqueFd src(openat(from, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      UniqueFd dst(openat(to, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!src || !dst) fail("open " + path);
      copy_tree(src.get(), dst.get(), path + "/", level + 1);
    } else if (S_ISREG(st.st_mode)) {
      UniqueFd src(openat(from, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      UniqueFd dst(openat(to, e->d_name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (!src || !dst) fail("copy " + path);
      for (off_t left = st.st_size; left > 0;) {
        ssize_t n = sendfile(dst.get(), src.get(), nullptr, static_cast<size_t>(left));
        if (n < 0) fail("copy " + path);
        if (n == 0) break;  // the file shrank
        left -= n;
      }
    } else if (S_ISLNK(st.st_mode)) {
      std::string link(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t n = readlinkat(from, e->d_name, link.data(), link.size());
      if (n < 0 || static_cast<size_t>(n) >= link.size()) fail("read link " + path);
      link.resize(static_cast<size_t>(n));
      if (symlinkat(link.c_str(), to, e->d_name) < 0) fail("symlink " + path);
    } else if (mknodat(to, e->d_name, st.st_mode, st.st_rdev) < 0) {
      fail("mknod " + path);
    }
    if (fchownat(to, e->d_name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
      fail("chown " + path);
    if (!S_ISLNK(st.st_mode) && fchmodat(to, e->d_name, st.st_mode & 07777, 0) < 0)
      fail("chmod " + path);
  }
}

void mount_tmpfs(const Tmpfs& t) {
  mkdir_p(t.target);
  struct stat before;
  if (stat(t.target.c_str(), &before) < 0) fail("stat " + t.target);
  UniqueFd lower;  // the directory the tmpfs will cover, for tmpcopyup
  if (t.copy_up) {
    lower = UniqueFd(open(t.target.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!lower) fail("open " + t.target + " for tmpcopyup");
  }
  if (mount("tmpfs", t.target.c_str(), "tmpfs", t.flags & ~MS_RDONLY,
            t.data.empty() ? nullptr : t.data.c_str()) < 0)
    fail("mount tmpfs on " + t.target + " (" + t.data + ")");
  // Without mode=, the tmpfs keeps the mode of the directory it covers (as runc does).
  if (t.data.find("mode=") == std::string::npos &&
      chmod(t.target.c_str(), before.st_mode & 07777) < 0)
    fail("chmod " + t.target);
  if (lower) {
    UniqueFd upper(open(t.target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!upper) fail("open " + t.target);
    copy_tree(lower.get(), upper.get(), t.target + "/");
  }
  if ((t.flags & MS_RDONLY) &&
      mount(nullptr, t.target.c_str(), nullptr, MS_REMOUNT | t.flags, t.data.c_str()) < 0)
    fail("make tmpfs " + t.target + " read-only");
}

void bind_file(const FileBind& b, int source) {
  std::string from = "/proc/self/fd/" + std::to_string(source);
  mkdir_p(b.target.substr(0, b.target.rfind('/')));
  UniqueFd target(open(b.target.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!target) fail("create " + b.target + " for kiln.bind " + b.tag + ":" + b.name);
  if (mount(from.c_str(), b.target.c_str(), nullptr, MS_BIND, nullptr) < 0)
    fail("bind-mount " + b.tag + ":" + b.name + " on " + b.target);
  if (b.read_only &&
      mount(nullptr, b.target.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) < 0)
    fail("make " + b.target + " read-only");
}

// The workload's mounts: kiln.volume shares, kiln.tmpfs and kiln.bind files, parents first
// (a tmpfs on /run before a file bound on /run/.containerenv). The shares of file binds are
// mounted first under /run/kiln/shares (read-only unless one of its binds is not) and their
// files opened, so a later tmpfs over /run cannot hide them; once bound they are unmounted.
void mount_workload(const BootConfig& cfg) {
  std::map<std::string, bool> shares;  // tag -> read-only
  for (const auto& b : cfg.binds) {
    auto [it, fresh] = shares.emplace(b.tag, b.read_only);
    if (!fresh) it->second = it->second && b.read_only;
  }
  std::vector<UniqueFd> share_roots, sources;
  if (!shares.empty()) mkdir_p("/run/kiln/shares");
  for (const auto& [tag, ro] : shares) {
    std::string dir = "/run/kiln/shares/" + tag;
    mount_fs(tag.c_str(), dir.c_str(), "virtiofs", MS_NOSUID | MS_NODEV | (ro ? MS_RDONLY : 0));
    share_roots.emplace_back(open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!share_roots.back()) fail("open " + dir);
  }
  for (const auto& b : cfg.binds) {
    std::string source = "/run/kiln/shares/" + b.tag + "/" + b.name;
    sources.emplace_back(open(source.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!sources.back()) fail("open " + source + " (kiln.bind " + b.tag + ":" + b.name + ")");
  }
  struct Op {
    const std::string* target;
    std::function<void()> mount;
  };
  std::vector<Op> ops;
  for (const auto& t : cfg.tmpfs) ops.push_back({&t.target, [&t] { mount_tmpfs(t); }});
  for (const auto& v : cfg.volumes)
    ops.push_back({&v.target, [&v] {
                     mkdir_p(v.target);
                     if (mount(v.tag.c_str(), v.target.c_str(), "virtiofs",
                               MS_NOSUID | MS_NODEV | (v.read_only ? MS_RDONLY : 0), nullptr) < 0)
                       fail("mount volume " + v.tag + " on " + v.target);
                   }});
  for (size_t i = 0; i < cfg.binds.size(); ++i)
    ops.push_back({&cfg.binds[i].target, [&, i] { bind_file(cfg.binds[i], sources[i].get()); }});
  std::stable_sort(ops.begin(), ops.end(),
                   [](const Op& a, const Op& b) { return depth(*a.target) < depth(*b.target); });
  for (const auto& op : ops) op.mount();
  sources.clear();
  for (const auto& root : share_roots)  // bound files keep their mounts alive
    umount2(("/proc/self/fd/" + std::to_string(root.get())).c_str(), MNT_DETACH);
  for (const auto& [tag, ro] : shares) rmdir(("/run/kiln/shares/" + tag).c_str());
  if (!shares.empty()) rmdir("/run/kiln/shares");
}

UniqueFd listen_vsock(uint32_t port) {
  UniqueFd s(socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) fail("vsock socket (does the VM have a vsock device?)");
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  if (bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    fail("bind vsock port " + std::to_string(port));
  if (listen(s.get(), 16) < 0) fail("listen on vsock");
  return s;
}

[[noreturn]] void power_off() {
  kill(-1, SIGTERM);
  // Up to 200 ms for the rest to go. Every process left is this init's child (orphans are
  // reparented here): ECHILD means none is (kill(-1, 0) would count kernel threads).
  for (int i = 0; i < 200; ++i) {
    pid_t pid;
    while ((pid = waitpid(-1, nullptr, WNOHANG)) > 0) {
    }
    if (pid < 0 && errno == ECHILD) break;
    usleep(1000);
  }
  kill(-1, SIGKILL);
  sync();
  reboot(RB_POWER_OFF);
  for (;;) pause();  // PID 1 must not exit
}

// The workload's root, its mounts, name and network: at boot, or at a warm agent's configure.
void set_up_workload(const BootConfig& cfg) {
  switch_root(cfg);
  mount_api_filesystems();
  mount_workload(cfg);
  if (sethostname(cfg.hostname.data(), cfg.hostname.size()) < 0) fail("sethostname");
  for (const auto& m : cfg.mac_changes) change_mac(m);
  for (const auto& n : cfg.nets) configure_link(n);
  if (!cfg.dns.empty()) install_resolv_conf(cfg.dns);
}

// The host's entropy credited to the pool, then a reseed (kernels without RNDRESEEDCRNG mix
// it in at their next reseed): clones of one snapshot start with the same random state.
void add_entropy(const std::vector<uint8_t>& bytes) {
  if (bytes.empty()) return;
  UniqueFd urandom(open("/dev/urandom", O_WRONLY | O_CLOEXEC));
  if (!urandom) fail("open /dev/urandom");
  std::vector<uint8_t> buf(sizeof(rand_pool_info) + bytes.size());
  auto* info = reinterpret_cast<rand_pool_info*>(buf.data());
  info->entropy_count = static_cast<int>(bytes.size() * 8);
  info->buf_size = static_cast<int>(bytes.size());
  std::memcpy(buf.data() + sizeof(rand_pool_info), bytes.data(), bytes.size());
  if (ioctl(urandom.get(), RNDADDENTROPY, info) < 0) fail("add the host's entropy");
#ifdef RNDRESEEDCRNG
  if (ioctl(urandom.get(), RNDRESEEDCRNG) < 0 && errno != EINVAL && errno != ENOTTY)
    fail("reseed the random number generator");
#endif
}

// A warm agent's configure: the host's clock and entropy, then the workload as at a boot.
void configure(const Configure& c) {
  BootConfig cfg = parse_boot_config(c.params, Source::kConfigure);
  if (c.realtime_ns) {
    timespec ts{static_cast<time_t>(c.realtime_ns / 1000000000ull),
                static_cast<long>(c.realtime_ns % 1000000000ull)};
    if (clock_settime(CLOCK_REALTIME, &ts) < 0) fail("set the clock");
  }
  add_entropy(c.entropy);
  set_up_workload(cfg);
  fprintf(stderr, "kiln-agent: set up by the host's configure (root %s)\n", cfg.root.c_str());
}

int run() {
  uint64_t start_boot = now_ns(CLOCK_BOOTTIME), start = now_ns(CLOCK_MONOTONIC);
  signal(SIGPIPE, SIG_IGN);
  mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  mount_fs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  BootConfig cfg = parse_boot_config(read_file("/proc/cmdline"));
  bring_up_lo();
  if (!cfg.warm) set_up_workload(cfg);

  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  UniqueFd sfd(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sfd) fail("signalfd");

  UniqueFd listener = listen_vsock(cfg.port);
  Hello hello;
  hello.software = "kiln-agent " KILN_VERSION;
  hello.boot_ns = start_boot;
  hello.startup_ns = now_ns(CLOCK_MONOTONIC) - start;
  Agent agent(hello);
  agent.set_listener(std::move(listener));
  if (cfg.warm) agent.set_configurer(configure);
  fprintf(stderr,
          "kiln-agent: ready on vsock port %u (kernel boot %.1f ms, agent start-up %.1f ms)%s\n",
          cfg.port, start_boot / 1e6, hello.startup_ns / 1e6,
          cfg.warm ? "; warm: waiting for the host's configure" : "");

  for (;;) {
    if (agent.poll_once(-1, sfd.get())) {
      signalfd_siginfo si;
      while (read(sfd.get(), &si, sizeof si) == sizeof si) {
        if (si.ssi_signo == SIGCHLD) continue;
        agent.signal_all(static_cast<int>(si.ssi_signo == SIGHUP ? SIGTERM : si.ssi_signo));
      }
    }
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) agent.child_exited(pid, status);
    if (agent.shutdown_requested()) {
      // The host's workload ended; whatever exec started is ended with the VM.
      if (agent.running() == 0)
        fprintf(stderr, "kiln-agent: workload done, powering off\n");
      else
        fprintf(stderr,
                "kiln-agent: the host stopped the sandbox, ending %zu processes, "
                "powering off\n",
                agent.running());
      break;
    }
    if (agent.started_total() > 0 && agent.running() == 0 && agent.connections() == 0) {
      fprintf(stderr, "kiln-agent: workload done, powering off\n");
      break;
    }
  }
  power_off();
}

}  // namespace
}  // namespace kiln::agent

int main() {
  if (getpid() != 1) {
    fprintf(stderr, "kiln-agent: runs as PID 1 in a Kiln guest (the initramfs' /init)\n");
    return 2;
  }
  try {
    kiln::agent::run();
  } catch (const std::exception& e) {
    fprintf(stderr, "kiln-agent: %s; powering off\n", e.what());
    sync();
    reboot(RB_POWER_OFF);
  }
  for (;;) pause();
}
