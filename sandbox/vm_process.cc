#include "sandbox/vm_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "base/error.h"
#include "base/unique_fd.h"

extern char** environ;

namespace kiln::sandbox {

using namespace std::chrono_literals;

pid_t spawn_vm(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  UniqueFd null_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd log_fd(open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!null_fd) throw_errno("open /dev/null");
  if (!log_fd) throw_errno("open the console log " + log);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) throw_errno("fork for the VM (kiln run)");
  if (pid == 0) {
    // Only async-signal-safe calls until exec. Its own process group, so a terminal's ^C
    // reaches the workload (through the agent) rather than stopping the VM; default signal
    // mask and dispositions.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(125);
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig)
      if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, nullptr);
    if (dup2(null_fd.get(), 0) < 0 || dup2(log_fd.get(), 1) < 0 || dup2(log_fd.get(), 2) < 0)
      _exit(125);
    execve("/proc/self/exe", argv.data(), environ);
    _exit(125);
  }
  return pid;
}

std::string tail_of(const std::string& path, size_t max) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  std::string t = s.str();
  return t.size() > max ? "..." + t.substr(t.size() - max) : t;
}

int wait_vm(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(20ms);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

VmReaper::~VmReaper() {
  if (pid > 0) {
    ::kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
}

}  // namespace kiln::sandbox
