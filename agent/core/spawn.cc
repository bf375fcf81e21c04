#include "agent/core/spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

extern char** environ;

namespace kiln::agent {

namespace {

[[noreturn]] void fail(const std::string& what, int err = errno) {
  throw std::runtime_error(what + ": " + std::strerror(err));
}

struct Pipe {
  UniqueFd r, w;
};
Pipe make_pipe() {
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) fail("pipe");
  return {UniqueFd(p[0]), UniqueFd(p[1])};
}

// In the child: report what failed through the status pipe and exit.
[[noreturn]] void child_fail(int status_fd, const char* what, const char* arg) {
  int err = errno;
  char msg[512];
  int n = snprintf(msg, sizeof msg, "%s%s%s%s: %s", what, arg ? " '" : "", arg ? arg : "",
                   arg ? "'" : "", strerror(err));
  if (n > 0) (void)!write(status_fd, msg, std::min<size_t>(static_cast<size_t>(n), sizeof msg));
  _exit(127);
}

}  // namespace

int rlimit_resource(const std::string& name) {
  static const std::pair<const char*, int> kNames[] = {
      {"as", RLIMIT_AS},           {"core", RLIMIT_CORE},         {"cpu", RLIMIT_CPU},
      {"data", RLIMIT_DATA},       {"fsize", RLIMIT_FSIZE},       {"locks", RLIMIT_LOCKS},
      {"memlock", RLIMIT_MEMLOCK}, {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},
      {"nofile", RLIMIT_NOFILE},   {"nproc", RLIMIT_NPROC},       {"rss", RLIMIT_RSS},
      {"rtprio", RLIMIT_RTPRIO},   {"rttime", RLIMIT_RTTIME},     {"sigpending", RLIMIT_SIGPENDING},
      {"stack", RLIMIT_STACK}};
  for (const auto& [n, r] : kNames)
    if (name == n) return r;
  return -1;
}

Spawned spawn(const Start& s) {
  std::vector<std::pair<int, rlimit>> limits;
  for (const auto& l : s.rlimits) {
    int r = rlimit_resource(l.resource);
    if (r < 0) throw std::runtime_error("unknown rlimit '" + l.resource + "'");
    limits.push_back({r, rlimit{l.soft, l.hard}});
  }
  // Everything the child needs is built before fork: it only makes system calls.
  std::vector<char*> argv, envp;
  for (const auto& a : s.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  bool has_path = false;
  for (const auto& e : s.env) {
    envp.push_back(const_cast<char*>(e.c_str()));
    has_path = has_path || e.rfind("PATH=", 0) == 0;
  }
  static char kDefaultPath[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  if (!has_path) envp.push_back(kDefaultPath);
  envp.push_back(nullptr);
  std::vector<gid_t> groups(s.groups.begin(), s.groups.end());

  Spawned out;
  UniqueFd child_in, child_out, child_err;
  if (s.terminal) {
    UniqueFd master(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!master || grantpt(master.get()) < 0 || unlockpt(master.get()) < 0) fail("pty");
    char name[128];
    if (ptsname_r(master.get(), name, sizeof name) != 0) fail("ptsname");
    UniqueFd slave(open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
    if (!slave) fail(std::string("open ") + name);
    winsize ws{s.rows, s.cols, 0, 0};
    if (ioctl(master.get(), TIOCSWINSZ, &ws) < 0) fail("TIOCSWINSZ");
    int in = fcntl(master.get(), F_DUPFD_CLOEXEC, 0);
    if (in < 0) fail("dup");
    if (s.stdin)
      out.stdin_fd.reset(in);
    else
      close(in);
    out.stdout_fd = std::move(master);
    child_in.reset(fcntl(slave.get(), F_DUPFD_CLOEXEC, 0));
    child_err.reset(fcntl(slave.get(), F_DUPFD_CLOEXEC, 0));
    child_out = std::move(slave);
    if (!child_in || !child_err) fail("dup");
  } else {
    if (s.stdin) {
      Pipe p = make_pipe();
      child_in = std::move(p.r);
      out.stdin_fd = std::move(p.w);
    } else {
      child_in.reset(open("/dev/null", O_RDONLY | O_CLOEXEC));
      if (!child_in) fail("open /dev/null");
    }
    Pipe o = make_pipe(), e = make_pipe();
    child_out = std::move(o.w);
    out.stdout_fd = std::move(o.r);
    child_err = std::move(e.w);
    out.stderr_fd = std::move(e.r);
  }
  Pipe status = make_pipe();
  // create_cwd: each directory from the top down, made in the child before it drops root.
  std::vector<std::string> cwd_parts;
  if (s.create_cwd) {
    for (size_t i = 1; i <= s.cwd.size(); ++i)
      if ((i == s.cwd.size() || s.cwd[i] == '/') && s.cwd[i - 1] != '/')
        cwd_parts.push_back(s.cwd.substr(0, i));
  }

  pid_t pid = fork();
  if (pid < 0) fail("fork");
  if (pid == 0) {
    int sfd = status.w.get();
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
    if (setsid() < 0) child_fail(sfd, "setsid", nullptr);
    if (s.terminal && ioctl(child_out.get(), TIOCSCTTY, 0) < 0)
      child_fail(sfd, "TIOCSCTTY", nullptr);
    if (dup2(child_in.get(), 0) < 0 || dup2(child_out.get(), 1) < 0 || dup2(child_err.get(), 2) < 0)
      child_fail(sfd, "dup2", nullptr);
    for (const auto& dir : cwd_parts)
      if (mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) child_fail(sfd, "mkdir", dir.c_str());
    umask(s.umask);
    for (const auto& [r, l] : limits)
      if (setrlimit(r, &l) < 0) child_fail(sfd, "setrlimit", nullptr);
    if (geteuid() == 0) {
      if (setgroups(groups.size(), groups.data()) < 0) child_fail(sfd, "setgroups", nullptr);
    } else if (!groups.empty()) {
      errno = EPERM;
      child_fail(sfd, "setgroups", nullptr);
    }
    if (getegid() != s.gid && setresgid(s.gid, s.gid, s.gid) < 0)
      child_fail(sfd, "setgid", nullptr);
    if (geteuid() != s.uid && setresuid(s.uid, s.uid, s.uid) < 0)
      child_fail(sfd, "setuid", nullptr);
    if (s.no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
      child_fail(sfd, "PR_SET_NO_NEW_PRIVS", nullptr);
    if (chdir(s.cwd.c_str()) < 0) child_fail(sfd, "chdir", s.cwd.c_str());
    environ = envp.data();
    execvp(argv[0], argv.data());
    child_fail(sfd, "exec", argv[0]);
  }
  status.w.reset();
  out.pid = pid;
  // The child's setup errors, if any; EOF (close-on-exec) means exec succeeded.
  char msg[512];
  ssize_t n;
  do n = read(status.r.get(), msg, sizeof msg);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    throw std::runtime_error(std::string(msg, static_cast<size_t>(n)));
  }
  out.pidfd.reset(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!out.pidfd) {
    int err = errno;
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    fail("pidfd_open", err);
  }
  return out;
}

}  // namespace kiln::agent
