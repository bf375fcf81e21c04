#include "tests/e2e/kiln_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

extern char** environ;

namespace kiln::e2e {

namespace {
std::string env_or_throw(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v)
    throw std::runtime_error(std::string(name) + " is not set (run through meson test)");
  return v;
}
}  // namespace

std::string kiln_binary() {
  return env_or_throw("KILN_BIN");
}

std::string guest_path(const std::string& name, const std::string& kind) {
  return env_or_throw("KILN_GUEST_DIR") + "/guest-" + name + kind;
}

namespace {
bool path_exists(const char* path) {
  struct stat st {};
  return ::stat(path, &st) == 0;
}
}  // namespace

bool kvm_usable(std::string* why) {
  struct stat st {};
  if (::stat("/dev/kvm", &st) == 0 && !S_ISCHR(st.st_mode)) {
    *why = "/dev/kvm is not a character device";
    return false;
  }
  const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    *why = std::string("open /dev/kvm: ") + std::strerror(errno);
    return false;
  }
  ::close(fd);
  // A PVM /dev/kvm (kvm_pvm, no VMX/SVM module) opens, but the test guests' ring-3 port I/O
  // faults there and ring 0 is emulated: scripts/test.sh runs these tests in the nested-KVM VM
  // instead (../shared/docs/kvm-here.md). KILN_KVM_HOST=hardware forces a run here.
  const char* forced = std::getenv("KILN_KVM_HOST");
  if (forced != nullptr && std::string(forced) == "hardware") return true;
  if (path_exists("/sys/module/kvm_pvm") && !path_exists("/sys/module/kvm_intel") &&
      !path_exists("/sys/module/kvm_amd")) {
    *why = "/dev/kvm is PVM (kvm_pvm): guest tests run in the nested-KVM VM (scripts/test.sh)";
    return false;
  }
  return true;
}

std::string uffd_handler_path() {
  // Built beside the test guests: build/tests/kiln-uffd-handler.
  return env_or_throw("KILN_GUEST_DIR") + "/../kiln-uffd-handler";
}

SpawnedKiln spawn_kiln(const std::vector<std::string>& args, const std::string& program) {
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) || ::pipe2(out_pipe, O_CLOEXEC) || ::pipe2(err_pipe, O_CLOEXEC))
    throw std::runtime_error("pipe2 failed");

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  std::vector<std::string> argv_store{program.empty() ? kiln_binary() : program};
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  SpawnedKiln child;
  const int rc = ::posix_spawn(&child.pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(in_pipe[1]);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    throw std::runtime_error(std::string("posix_spawn kiln: ") + std::strerror(rc));
  }
  ::signal(SIGPIPE, SIG_IGN);  // writes to a kiln that exited must not kill the test
  child.stdin_fd = in_pipe[1];
  child.stdout_fd = out_pipe[0];
  child.stderr_fd = err_pipe[0];
  return child;
}

KilnRun run_kiln(const std::vector<std::string>& args, const KilnInput& input,
                 int timeout_seconds) {
  const SpawnedKiln child = spawn_kiln(args);
  const pid_t pid = child.pid;
  KilnRun result;
  int stdin_fd = child.stdin_fd;
  bool input_sent = false;
  auto send_input = [&] {
    if (input_sent || stdin_fd < 0) return;
    if (!input.wait_for.empty() && result.out.find(input.wait_for) == std::string::npos) return;
    input_sent = true;
    [[maybe_unused]] ssize_t n = ::write(stdin_fd, input.data.data(), input.data.size());
    if (input.close_stdin) {
      ::close(stdin_fd);
      stdin_fd = -1;
    }
  };
  send_input();

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  pollfd fds[2] = {{child.stdout_fd, POLLIN, 0}, {child.stderr_fd, POLLIN, 0}};
  int open_streams = 2;
  while (open_streams > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(fds, 2, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_streams;
      } else {
        (i == 0 ? result.out : result.err).append(buf, static_cast<size_t>(n));
      }
    }
    send_input();
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  if (stdin_fd >= 0) ::close(stdin_fd);
  int status = 0;
  rusage usage{};
  if (::wait4(pid, &status, 0, &usage) == pid) result.max_rss_kib = usage.ru_maxrss;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string describe(const KilnRun& r) {
  return "exit " + std::to_string(r.exit_code) + (r.timed_out ? " (timed out)" : "") +
         "\n--- stdout ---\n" + r.out + "\n--- stderr ---\n" + r.err;
}

}  // namespace kiln::e2e
