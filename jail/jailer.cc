#include "jail/jailer.h"

#include <elf.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

#include "base/error.h"
#include "base/unique_fd.h"
#include "jail/cgroup.h"

namespace kiln::jail {

namespace {

constexpr uint64_t kDefaultNoFile = 2048;

// The device nodes a VM may need, made in the jail with the host's numbers (those it has).
constexpr std::array<const char*, 4> kDevices = {"/dev/kvm", "/dev/net/tun", "/dev/urandom",
                                                 "/dev/userfaultfd"};

void check(bool ok, const std::string& what) {
  if (!ok) throw_errno(what);
}

// The jail is empty: an executable that needs the dynamic loader cannot start there.
void require_static(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  check(static_cast<bool>(fd), "--exec-file: open " + path);
  Elf64_Ehdr eh{};
  if (::pread(fd.get(), &eh, sizeof eh, 0) != sizeof eh ||
      std::memcmp(eh.e_ident, ELFMAG, 4) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64)
    throw UsageError("--exec-file " + path + ": not a 64-bit ELF executable");
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256)
    throw UsageError("--exec-file " + path + ": bad ELF program headers");
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph{};
    if (::pread(fd.get(), &ph, sizeof ph, static_cast<off_t>(eh.e_phoff + i * sizeof ph)) !=
        sizeof ph)
      throw UsageError("--exec-file " + path + ": truncated ELF program headers");
    if (ph.p_type == PT_INTERP)
      throw UsageError("--exec-file " + path +
                       ": dynamically linked (it needs a dynamic loader the empty jail does not "
                       "have); use a static kiln (the default build: -Dstatic_kiln=true)");
  }
}

// `from` copied to `to` (mode 0755) through a temporary file and a rename.
void copy_executable(const std::string& from, const std::string& to) {
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  check(static_cast<bool>(in), "copying the executable: open " + from);
  struct stat st {};
  check(::fstat(in.get(), &st) == 0, "copying the executable: stat " + from);
  // The jail's root belongs to the jailed user: a reused jail may hold what an earlier VM left
  // there (a symlink at the temporary name). Nothing there is followed: the name is removed
  // and made anew (O_EXCL, O_NOFOLLOW); the rename replaces whatever `to` is.
  const std::string tmp = to + ".tmp";
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT)
    throw_errno("copying the executable: unlink " + tmp);
  UniqueFd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0755));
  check(static_cast<bool>(out), "copying the executable: create " + tmp);
  for (off_t done = 0; done < st.st_size;) {
    const ssize_t n = ::copy_file_range(in.get(), nullptr, out.get(), nullptr,
                                        static_cast<size_t>(st.st_size - done), 0);
    if (n <= 0) {
      ::unlink(tmp.c_str());
      throw_errno("copying the executable to " + tmp);
    }
    done += n;
  }
  check(::fchmod(out.get(), 0755) == 0, "copying the executable: chmod " + tmp);
  check(::rename(tmp.c_str(), to.c_str()) == 0, "copying the executable: rename to " + to);
}

void set_limits(const JailOptions& o) {
  bool nofile = false;
  for (const auto& [resource, value] : o.rlimits) {
    const rlimit l{value, value};
    check(::setrlimit(resource, &l) == 0, "--resource-limit: setrlimit");
    nofile = nofile || resource == RLIMIT_NOFILE;
  }
  if (!nofile) {
    const rlimit l{kDefaultNoFile, kDefaultNoFile};
    check(::setrlimit(RLIMIT_NOFILE, &l) == 0, "setrlimit(RLIMIT_NOFILE, 2048)");
  }
}

// A new mount namespace whose root is `dir` (pivot_root; the old root unmounted).
void pivot_into(const std::string& dir) {
  check(::unshare(CLONE_NEWNS) == 0, "unshare(CLONE_NEWNS)");
  check(::mount(nullptr, "/", nullptr, MS_PRIVATE | MS_REC, nullptr) == 0,
        "making the mounts private");
  check(::mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) == 0, "bind-mounting " + dir);
  check(::chdir(dir.c_str()) == 0, "chdir " + dir);
  // An old_root left in a reused jail is not trusted: whatever it is, it is made anew.
  struct stat st {};
  if (::lstat("old_root", &st) == 0 &&
      ::unlinkat(AT_FDCWD, "old_root", S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0)
    throw_errno("removing old_root left in the jail");
  check(::mkdir("old_root", 0700) == 0, "mkdir old_root");
  check(::syscall(SYS_pivot_root, ".", "old_root") == 0, "pivot_root into " + dir);
  check(::chdir("/") == 0, "chdir /");
  check(::umount2("/old_root", MNT_DETACH) == 0, "unmounting the old root");
  check(::rmdir("/old_root") == 0, "rmdir /old_root");
  check(::chroot(".") == 0, "chroot .");
}

void make_devices(const std::vector<std::pair<std::string, dev_t>>& devices, uid_t uid, gid_t gid) {
  for (const auto& [path, rdev] : devices) {
    const std::string parent = path.substr(0, path.rfind('/'));
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) throw Error("mkdir " + parent + " in the jail: " + ec.message());
    ::unlink(path.c_str());
    check(::mknod(path.c_str(), S_IFCHR | S_IRUSR | S_IWUSR, rdev) == 0, "mknod " + path);
    check(::chown(path.c_str(), uid, gid) == 0, "chown " + path);
  }
}

void daemonize(int dev_null) {
  if (::getpgrp() == ::getpid()) {
    // A process group leader cannot setsid(): the child goes on, the leader leaves.
    const pid_t pid = ::fork();
    check(pid >= 0, "--daemonize: fork");
    if (pid > 0) ::_exit(0);
  }
  check(::setsid() >= 0, "--daemonize: setsid");
  for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO})
    check(::dup2(dev_null, fd) == fd, "--daemonize: stdio to /dev/null");
}

// Clones into a new PID namespace: the parent writes the child's PID to /<name>.pid (in the
// jail) and exits; the child returns and goes on as PID 1 there.
void enter_new_pid_ns(const std::string& exec_name) {
  const long pid = ::syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  check(pid >= 0, "--new-pid-ns: clone(CLONE_NEWPID)");
  if (pid == 0) return;
  const std::string pid_file = "/" + exec_name + ".pid";
  ::unlink(pid_file.c_str());  // what a reused jail left there is not followed
  UniqueFd f(::open(pid_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  const std::string text = std::to_string(pid) + "\n";
  if (!f || ::write(f.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    std::fprintf(stderr, "kiln jail: writing %s: %s\n", pid_file.c_str(), std::strerror(errno));
  ::_exit(0);
}

void drop_ids(uid_t uid, gid_t gid) {
  check(::setgroups(0, nullptr) == 0, "setgroups");
  check(::setresgid(gid, gid, gid) == 0, "setresgid " + std::to_string(gid));
  check(::setresuid(uid, uid, uid) == 0, "setresuid " + std::to_string(uid));
  check(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "prctl(PR_SET_NO_NEW_PRIVS)");
}

}  // namespace

void run_jailed(const JailOptions& o) {
  if (::geteuid() != 0)
    throw UsageError("must run as root (it makes namespaces, device nodes and cgroups)");
  // Nothing inherited reaches the jail but standard I/O.
  check(::close_range(3, ~0U, 0) == 0, "closing inherited file descriptors");
  require_static(o.exec_file);
  // The cgroup first: a controller the host lacks is refused before the jail is made.
  if (!o.cgroups.empty() || !o.parent_cgroup.empty())
    enter_cgroup({o.cgroup_version, o.parent_cgroup.empty() ? o.exec_name() : o.parent_cgroup, o.id,
                  o.cgroups});
  const std::string root = o.chroot_dir();
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec) throw Error("making the jail " + root + ": " + ec.message());
  copy_executable(o.exec_file, root + "/" + o.exec_name());
  set_limits(o);
  if (!o.netns.empty()) {
    UniqueFd ns(::open(o.netns.c_str(), O_RDONLY | O_CLOEXEC));
    check(static_cast<bool>(ns), "--netns: open " + o.netns);
    check(::setns(ns.get(), CLONE_NEWNET) == 0, "--netns: setns " + o.netns);
  }
  UniqueFd dev_null;
  if (o.daemonize) {
    dev_null.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
    check(static_cast<bool>(dev_null), "--daemonize: open /dev/null");
  }
  std::vector<std::pair<std::string, dev_t>> devices;
  for (const char* d : kDevices) {
    struct stat st {};
    if (::stat(d, &st) == 0 && S_ISCHR(st.st_mode)) devices.emplace_back(d, st.st_rdev);
  }
  pivot_into(root);
  make_devices(devices, o.uid, o.gid);
  check(::chown("/", o.uid, o.gid) == 0, "chown the jail's root");
  if (o.daemonize) daemonize(dev_null.get());
  if (o.new_pid_ns) enter_new_pid_ns(o.exec_name());
  drop_ids(o.uid, o.gid);
  const std::string exe = "/" + o.exec_name();
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(exe.c_str()));
  for (const std::string& a : o.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  char* envp[] = {nullptr};
  ::execve(exe.c_str(), argv.data(), envp);
  throw_errno("exec " + exe + " in the jail");
}

}  // namespace kiln::jail
