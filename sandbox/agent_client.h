// The host's side of the agent protocol (docs/agent-protocol.md): reaches kiln-agent through
// the vsock device's Unix socket, starts processes, pumps their stdio with credit-based flow
// control and reports their exits. Every message from the agent is validated: the guest is
// untrusted, and a bad message throws agent::ProtocolError (the caller stops the sandbox).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/protocol/channel.h"
#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::sandbox {

// Where a process's stdio goes on the host. in < 0: the process gets /dev/null.
struct Stdio {
  int in = -1;
  int out = 1;
  int err = 2;
};

// The agent refused to start a process (its message says why: "exec 'x': No such file ...").
class StartError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class DeadlineError : public kiln::Error {
 public:
  using kiln::Error::Error;
};

// The agent (or the guest's vsock transport) closed the connection.
class ClosedError : public kiln::Error {
 public:
  using kiln::Error::Error;
};

class AgentClient {
 public:
  explicit AgentClient(UniqueFd stream);

  // A stream to guest vsock port `port` through Kiln's vsock host side: connects to `uds_path`
  // and asks "CONNECT <port>\n", retrying (the VM may still be booting: no socket yet, or the
  // guest refusing) until "OK <n>\n" or `timeout`. Throws kiln::Error naming what failed.
  // `keep_trying` (if set) is asked between attempts; false gives up at once (the VM died).
  static UniqueFd connect_vsock(const std::string& uds_path, uint32_t port,
                                std::chrono::milliseconds timeout,
                                const std::function<bool()>& keep_trying = {});

  // Sends the host's hello and waits for the agent's (its version and timings).
  agent::Hello handshake(std::chrono::milliseconds timeout);

  // Sets up the workload of an agent that booted warm (a pooled snapshot's) and waits up to
  // `timeout` for it to be done; kiln::Error with the agent's reason if it could not.
  void configure(const agent::Configure& c, std::chrono::milliseconds timeout);

  // Starts a process and waits for the agent's answer; returns its pid in the guest. `s.id` is
  // filled in. Throws StartError if the agent could not start it. The stdio fds stay the
  // caller's; they are used until the process's exit is reported.
  int32_t start(agent::Start& s, Stdio io);
  void signal(uint32_t id, int sig);
  void resize(uint32_t id, uint16_t rows, uint16_t cols);
  // Asks the agent to stop the sandbox (every process ended, sync, power off).
  void shutdown();

  // While pumping, `on_readable` runs when `fd` is readable (a control socket's listener).
  void watch(int fd, std::function<void()> on_readable);
  // wait() gives up at `deadline` with DeadlineError (a workload that ignores SIGKILL: the
  // guest is not doing what it is told).
  void set_deadline(std::chrono::steady_clock::time_point deadline) { deadline_ = deadline; }

  // While pumping, signals read from this signalfd are sent to every started process
  // (SIGINT/SIGTERM to Kiln go to the workload first); SIGWINCH resizes the terminal of each
  // process started with one to the size of its host stdout.
  void forward_signals(int signal_fd) { signal_fd_ = signal_fd; }

  // Pumps stdio of every process until `id` exited; returns its exit.
  agent::Exit wait(uint32_t id);
  // Pumps (the connection, watched fds, signals) until `done()` (checked after each round).
  void pump_until(const std::function<bool()>& done);
  // A signal from forward_signals()'s fd that arrived while no process ran (0: none).
  int unforwarded_signal() const { return unforwarded_signal_; }
  // start + wait: the exit status (code, or 128 + signal).
  int run(agent::Start s, Stdio io);

 private:
  struct Proc {
    Stdio io;
    bool started = false;
    int32_t pid = 0;
    bool terminal = false;
    bool failed = false;
    std::string error;
    bool exited = false;
    agent::Exit exit;
    uint32_t in_credit = agent::kInitialWindow;  // stdin bytes we may still send
    uint32_t in_flight = 0;                      // sent, not yet credited back
    bool in_eof = false;
    uint32_t out_allowed[2] = {agent::kInitialWindow, agent::kInitialWindow};
  };

  // One round: waits for the agent or a stdin fd and handles what arrived.
  void pump(int timeout_ms);
  void handle(agent::Message&& m);
  Proc& proc(uint32_t id, const char* what);
  void send_stdin(uint32_t id, Proc& p);

  agent::Channel ch_;
  bool greeted_ = false;
  std::optional<agent::Hello> hello_;
  enum class Setup { kNone, kAsked, kDone } setup_ = Setup::kNone;  // configure's progress
  uint32_t next_id_ = 1;
  std::map<uint32_t, Proc> procs_;
  int signal_fd_ = -1;
  std::vector<std::pair<int, std::function<void()>>> watches_;
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  int unforwarded_signal_ = 0;
};

}  // namespace kiln::sandbox
