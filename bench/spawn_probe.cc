// spawn_probe: times a freshly exec'd process from C++, so that start-up figures do not carry
// the cost of Python's subprocess machinery (a few ms on a small VM). bench/vmm_bench.py runs it
// for Kiln and QEMU alike.
//
//   spawn_probe --connect PATH [[--send TEXT] --until TEXT] -- CMD [ARG...]
//       exec -> the Unix socket PATH accepts a connection ("connect_ms"); with --until, the
//       --send text (if any) is written and the socket read until it contains the --until text
//       ("ready_ms").
//   spawn_probe --output TEXT -- CMD [ARG...]
//       exec -> the first byte on the child's stdout ("first_ms") and the first occurrence of
//       TEXT ("match_ms").
//   spawn_probe --exit -- CMD [ARG...]
//       exec -> the child has exited ("exit_ms"): the cost of exec itself on this machine.
//
// TEXT may use \r \n \\ escapes. The probe prints one JSON line ({"pid": N, ...}), then waits
// until its standard input is closed (the caller reads /proc/N meanwhile), kills the child's
// process group and exits 0. On a timeout (60 s) or an early exit of the child it prints
// {"error": "..."} and exits 1.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;

namespace {

constexpr double kTimeoutMs = 60000;

double now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

void pause_us(long us) {
  timespec ts{0, us * 1000};
  nanosleep(&ts, nullptr);
}

std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    char c = s[++i];
    out += c == 'r' ? '\r' : c == 'n' ? '\n' : c;
  }
  return out;
}

[[noreturn]] void fail(const std::string& why) {
  std::printf("{\"error\": \"%s\"}\n", why.c_str());
  std::fflush(stdout);
  std::exit(1);
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: spawn_probe (--connect PATH [[--send TEXT] --until TEXT] | --output TEXT | "
               "--exit) -- CMD [ARG...]\n");
  std::exit(2);
}

struct Options {
  std::string connect, send, until, output;
  bool exit = false;
  std::vector<char*> argv;
};

Options parse(int argc, char** argv) {
  Options o;
  int i = 1;
  for (; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "--exit") {
      o.exit = true;
      continue;
    }
    if (i + 1 >= argc) usage();
    std::string v = unescape(argv[++i]);
    if (a == "--connect")
      o.connect = v;
    else if (a == "--send")
      o.send = v;
    else if (a == "--until")
      o.until = v;
    else if (a == "--output")
      o.output = v;
    else
      usage();
  }
  for (; i < argc; ++i) o.argv.push_back(argv[i]);
  o.argv.push_back(nullptr);
  int modes = !o.connect.empty() + !o.output.empty() + o.exit;
  if (o.argv.size() < 2 || modes != 1 || (!o.send.empty() && o.until.empty())) usage();
  return o;
}

// True once the child has exited (reaped here).
bool child_gone(pid_t pid) {
  int status = 0;
  return waitpid(pid, &status, WNOHANG) == pid;
}

int connect_once(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return fd;
  close(fd);
  return -1;
}

// Reads fd until `want` appears in what was read; returns the time of the first byte.
double read_until(int fd, const std::string& want, double t0, pid_t pid, double* first) {
  std::string buf;
  char chunk[65536];
  while (buf.find(want) == std::string::npos) {
    if (now_ms() - t0 > kTimeoutMs) fail("timed out waiting for the expected text");
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(child_gone(pid) ? "the child exited first" : "end of stream");
    if (first != nullptr && *first < 0) *first = now_ms();
    buf.append(chunk, static_cast<size_t>(n));
  }
  return now_ms();
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  int out_pipe[2] = {-1, -1};
  if (!o.output.empty() && pipe2(out_pipe, O_CLOEXEC) != 0) fail("pipe2 failed");

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (out_pipe[1] >= 0)
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  else
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);

  pid_t pid = -1;
  double t0 = now_ms();
  if (posix_spawn(&pid, o.argv[0], &fa, &attr, o.argv.data(), environ) != 0) {
    fail(std::string("cannot exec ") + o.argv[0]);
  }
  if (out_pipe[1] >= 0) close(out_pipe[1]);

  char line[256];
  if (o.exit) {
    int status = 0;
    waitpid(pid, &status, 0);
    std::snprintf(line, sizeof(line), "{\"pid\": %d, \"exit_ms\": %.3f}", pid, now_ms() - t0);
  } else if (!o.connect.empty()) {
    int fd = -1;
    while ((fd = connect_once(o.connect)) < 0) {
      if (child_gone(pid)) fail("the child exited before accepting");
      if (now_ms() - t0 > kTimeoutMs) fail("timed out waiting for the socket");
      pause_us(50);
    }
    double t_conn = now_ms(), t_ready = t_conn;
    if (!o.until.empty()) {
      if (!o.send.empty() &&
          write(fd, o.send.data(), o.send.size()) != static_cast<ssize_t>(o.send.size())) {
        fail("write to the socket failed");
      }
      t_ready = read_until(fd, o.until, t0, pid, nullptr);
    }
    close(fd);
    std::snprintf(line, sizeof(line), "{\"pid\": %d, \"connect_ms\": %.3f, \"ready_ms\": %.3f}",
                  pid, t_conn - t0, t_ready - t0);
  } else {
    double first = -1;
    double t_match = read_until(out_pipe[0], o.output, t0, pid, &first);
    std::snprintf(line, sizeof(line), "{\"pid\": %d, \"first_ms\": %.3f, \"match_ms\": %.3f}", pid,
                  first - t0, t_match - t0);
  }
  std::printf("%s\n", line);
  std::fflush(stdout);

  // The caller reads /proc/<pid> now; it closes our stdin when done.
  char c;
  while (read(0, &c, 1) > 0) {
  }
  if (!o.exit) {
    kill(-pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
  }
  return 0;
}
