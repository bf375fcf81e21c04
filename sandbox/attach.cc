#include "sandbox/attach.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "base/error.h"

namespace kiln::sandbox {

namespace {

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

}  // namespace

UniqueFd forwarded_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGWINCH}) sigaddset(&set, sig);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  UniqueFd fd(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd) throw_errno("signalfd");
  return fd;
}

int attach(AgentClient& client, agent::Start s, const AttachOptions& o,
           const std::function<void(uint32_t)>& on_started) {
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
  try {
    client.start(s, {o.interactive ? STDIN_FILENO : -1, STDOUT_FILENO, STDERR_FILENO});
  } catch (const StartError& e) {
    raw.reset();
    std::fprintf(stderr, "kiln sandbox: %s\n", e.what());
    // As shells and Docker: 127 for a command that is not there, 126 for any other failure
    // to start it (not executable, a missing working directory, a user it cannot become).
    std::string why = e.what();
    bool not_found =
        why.find(": exec '") != std::string::npos && why.find("No such file") != std::string::npos;
    return not_found ? 127 : 126;
  }
  if (on_started) on_started(s.id);
  return client.wait(s.id).status();
}

}  // namespace kiln::sandbox
