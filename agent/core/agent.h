// The agent's process-running core: serves protocol connections, starts and supervises their
// processes, pumps their stdio under credit-based flow control, reports their exits. Knows
// nothing of being PID 1 (agent/init.cc adds that), so unit tests run it on the host.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <vector>

#include "agent/protocol/channel.h"
#include "base/unique_fd.h"

namespace kiln::agent {

class Agent {
 public:
  explicit Agent(Hello hello) : hello_(std::move(hello)) {}

  void set_listener(UniqueFd fd) { listener_ = std::move(fd); }  // accept() on it
  // A warm boot (kiln.warm=1): one `configure` is taken before any start and handed to
  // `configurer`, which sets the workload up; what it throws goes back to the host as the
  // connection's error.
  void set_configurer(std::function<void(const Configure&)> configurer) {
    configurer_ = std::move(configurer);
  }
  void add_connection(UniqueFd fd);

  // Waits up to `timeout_ms` for something to do and does it. `extra_fd` (if >= 0) is polled
  // too; returns true when it is readable (the caller's signalfd).
  bool poll_once(int timeout_ms, int extra_fd = -1);

  // A status a reaper collected with waitpid(-1) (the PID-1 loop): recorded if the pid is one
  // of ours; returns whether it was.
  bool child_exited(pid_t pid, int status);
  // Sends `sig` to every running process (SIGTERM/SIGINT forwarded by init).
  void signal_all(int sig);

  size_t connections() const { return conns_.size(); }
  size_t running() const;
  uint64_t started_total() const { return started_total_; }
  // A host sent `shutdown`: the sandbox is to stop now (init powers off).
  bool shutdown_requested() const { return shutdown_; }

 private:
  struct Output {
    UniqueFd fd;
    uint32_t credit = kInitialWindow;
  };
  struct Process {
    uint32_t id = 0;
    pid_t pid = -1;
    UniqueFd pidfd;
    bool exited = false;
    int status = 0;
    UniqueFd in;
    std::vector<uint8_t> in_buf;
    size_t in_pos = 0;
    uint32_t in_allowed = kInitialWindow;  // stdin bytes the host may still send
    bool in_close = false;                 // close stdin once in_buf is written
    Output out[2];                         // stdout, stderr
  };
  struct Conn {
    explicit Conn(UniqueFd fd) : ch(std::move(fd)) {}
    Channel ch;
    bool greeted = false;
    bool closing = false;  // error sent: flush, then close
    uint32_t last_id = 0;  // start ids increase; a lower one not running has exited
    std::map<uint32_t, std::unique_ptr<Process>> procs;
  };

  void handle(Conn& c, Message&& m);
  void start(Conn& c, Start&& s);
  // The running process `id`; nullptr if it exited (messages racing its exit are dropped);
  // ProtocolError for an id never started.
  Process* find(Conn& c, uint32_t id, const char* what);
  void pump_stdin(Conn& c, Process& p);
  // Reads what credit allows into a data message; false if nothing was there (EAGAIN).
  bool pump_output(Conn& c, Process& p, int which);
  void reap(Process& p);
  void finish(Conn& c);  // sends exits of finished processes
  void drop(std::list<Conn>::iterator it);

  Hello hello_;
  UniqueFd listener_;
  std::list<Conn> conns_;
  // Processes of closed connections: killed, waiting to be reaped.
  std::vector<std::unique_ptr<Process>> doomed_;
  uint64_t started_total_ = 0;
  bool shutdown_ = false;
  std::function<void(const Configure&)> configurer_;
  bool configured_ = false;
};

}  // namespace kiln::agent
