#include "sandbox/agent_client.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/unix_socket.h"

namespace kiln::sandbox {

using namespace agent;
using Clock = std::chrono::steady_clock;

namespace {

// Writes all of `data` to a host fd (waiting while it is full). A reader that went away
// (EPIPE) drops the rest: the workload is not held back by a closed terminal or pipe.
void write_all(int fd, const uint8_t* data, size_t n) {
  while (n > 0 && fd >= 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd p{fd, POLLOUT, 0};
        poll(&p, 1, -1);
        continue;
      }
      return;
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
}

int ms_left(Clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

// One line ending in '\n' (at most 32 bytes), read byte by byte so nothing after it is taken.
bool read_line(int fd, std::string* line, Clock::time_point deadline) {
  line->clear();
  while (line->size() < 32) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, ms_left(deadline)) <= 0) return false;
    char c;
    ssize_t n = ::read(fd, &c, 1);
    if (n <= 0) return false;
    if (c == '\n') return true;
    *line += c;
  }
  return false;
}

}  // namespace

AgentClient::AgentClient(UniqueFd stream) : ch_(std::move(stream)) {}

UniqueFd AgentClient::connect_vsock(const std::string& uds_path, uint32_t port,
                                    std::chrono::milliseconds timeout,
                                    const std::function<bool()>& keep_trying) {
  auto addr = unix_address(uds_path);
  if (!addr)
    throw kiln::Error("vsock socket path '" + uds_path +
                      "' is empty or too long for a Unix socket");
  auto deadline = Clock::now() + timeout;
  std::string last = "no attempt";
  while (Clock::now() < deadline) {
    UniqueFd s = connect_unix(*addr);
    if (!s) {
      last = errno_message("connect " + uds_path);
    } else {
      std::string req = "CONNECT " + std::to_string(port) + "\n", line;
      if (::send(s.get(), req.data(), req.size(), MSG_NOSIGNAL) ==
              static_cast<ssize_t>(req.size()) &&
          read_line(s.get(), &line, deadline)) {
        if (line.rfind("OK ", 0) == 0) return s;
        last = "unexpected answer '" + line + "'";
      } else {
        last = "the guest did not accept on port " + std::to_string(port);
      }
    }
    if (keep_trying && !keep_trying()) {
      last += "; the VM stopped";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  throw kiln::Error("cannot reach the agent on vsock port " + std::to_string(port) + " through " +
                    uds_path + " within " + std::to_string(timeout.count()) + " ms (" + last +
                    "); is the VM booting kiln-agent?");
}

Hello AgentClient::handshake(std::chrono::milliseconds timeout) {
  Hello h;
  h.software = "kiln " KILN_VERSION;
  ch_.send(h);
  auto deadline = Clock::now() + timeout;
  while (!hello_) {
    int left = ms_left(deadline);
    if (left == 0)
      throw kiln::Error("the agent did not answer hello within " + std::to_string(timeout.count()) +
                        " ms");
    pump(left);
  }
  return *hello_;
}

void AgentClient::configure(const agent::Configure& c, std::chrono::milliseconds timeout) {
  if (!hello_ || setup_ != Setup::kNone) throw kiln::Error("configure before the handshake");
  setup_ = Setup::kAsked;
  ch_.send(c);
  auto deadline = Clock::now() + timeout;
  while (setup_ != Setup::kDone) {
    int left = ms_left(deadline);
    if (left == 0)
      throw kiln::Error("the agent did not set up the workload within " +
                        std::to_string(timeout.count()) + " ms");
    pump(left);
  }
}

AgentClient::Proc& AgentClient::proc(uint32_t id, const char* what) {
  auto it = procs_.find(id);
  if (it == procs_.end() || it->second.exited || it->second.failed)
    throw ProtocolError(std::string("agent sent ") + what + " for process " + std::to_string(id) +
                        ", which is not running");
  return it->second;
}

void AgentClient::handle(Message&& m) {
  if (!hello_) {
    auto* h = std::get_if<Hello>(&m);
    if (auto* e = std::get_if<agent::Error>(&m))
      throw ProtocolError("the agent refused the connection: " + e->message);
    if (!h) throw ProtocolError(std::string("expected hello, the agent sent ") + message_name(m));
    if (h->version != kProtocolVersion)
      throw ProtocolError("the agent speaks protocol version " + std::to_string(h->version) +
                          ", Kiln " + std::to_string(kProtocolVersion));
    hello_ = *h;
    return;
  }
  std::visit(
      [&](auto&& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, Started>) {
          Proc& p = proc(v.id, "started");
          if (p.started) throw ProtocolError("agent sent started twice for one process");
          p.started = true;
          p.pid = v.pid;
        } else if constexpr (std::is_same_v<T, Configured>) {
          if (setup_ != Setup::kAsked)
            throw ProtocolError("agent sent configured without a configure");
          setup_ = Setup::kDone;
        } else if constexpr (std::is_same_v<T, agent::Error>) {
          if (v.id == 0 && setup_ == Setup::kAsked)
            throw kiln::Error("the agent could not set up the workload: " + v.message);
          if (v.id == 0) throw ProtocolError("the agent reports: " + v.message);
          Proc& p = proc(v.id, "error");
          if (p.started) throw ProtocolError("agent sent a start error for a started process");
          p.failed = true;
          p.error = v.message;
        } else if constexpr (std::is_same_v<T, Data>) {
          if (v.stream == Stream::Stdin) throw ProtocolError("agent sent data on stdin");
          Proc& p = proc(v.id, "data");
          int i = v.stream == Stream::Stdout ? 0 : 1;
          if (!p.started || v.bytes.size() > p.out_allowed[i])
            throw ProtocolError(std::string("agent sent ") + stream_name(v.stream) +
                                " data beyond the credit Kiln granted");
          p.out_allowed[i] -= static_cast<uint32_t>(v.bytes.size());
          write_all(i == 0 ? p.io.out : p.io.err, v.bytes.data(), v.bytes.size());
          // Written (Kiln buffers nothing): the agent may send as much again.
          p.out_allowed[i] += static_cast<uint32_t>(v.bytes.size());
          ch_.send(Credit{v.id, v.stream, static_cast<uint32_t>(v.bytes.size())});
        } else if constexpr (std::is_same_v<T, Credit>) {
          if (v.stream != Stream::Stdin)
            throw ProtocolError("agent granted credit on " + std::string(stream_name(v.stream)));
          Proc& p = proc(v.id, "credit");
          if (v.bytes > p.in_flight)
            throw ProtocolError("agent credited more stdin than Kiln sent");
          p.in_flight -= v.bytes;
          p.in_credit += v.bytes;
        } else if constexpr (std::is_same_v<T, Exit>) {
          Proc& p = proc(v.id, "exit");
          if (!p.started) throw ProtocolError("agent sent exit for a process it did not start");
          p.exited = true;
          p.exit = v;
        } else {
          throw ProtocolError(std::string("unexpected '") + message_name(m) +
                              "' message from the agent");
        }
      },
      std::move(m));
}

void AgentClient::send_stdin(uint32_t id, Proc& p) {
  std::vector<uint8_t> buf(std::min<size_t>(p.in_credit, kMaxData));
  ssize_t n = ::read(p.io.in, buf.data(), buf.size());
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    p.in_eof = true;
    ch_.send(CloseStdin{id});
    return;
  }
  buf.resize(static_cast<size_t>(n));
  p.in_credit -= static_cast<uint32_t>(n);
  p.in_flight += static_cast<uint32_t>(n);
  ch_.send(Data{id, Stream::Stdin, std::move(buf)});
}

void AgentClient::pump(int timeout_ms) {
  std::vector<pollfd> fds{
      {ch_.fd(), static_cast<short>(POLLIN | (ch_.pending() ? POLLOUT : 0)), 0}};
  if (signal_fd_ >= 0) fds.push_back({signal_fd_, POLLIN, 0});
  size_t first_watch = fds.size();
  for (const auto& w : watches_) fds.push_back({w.first, POLLIN, 0});
  size_t first_stdin = fds.size();
  std::vector<uint32_t> ids;
  // Stdin is read only while the channel is not backed up and the agent granted credit.
  if (ch_.pending() < kMaxFrame)
    for (auto& [id, p] : procs_)
      if (p.started && !p.exited && p.io.in >= 0 && !p.in_eof && p.in_credit > 0) {
        fds.push_back({p.io.in, POLLIN, 0});
        ids.push_back(id);
      }
  int n = poll(fds.data(), fds.size(), timeout_ms);
  if (n < 0 && errno != EINTR) throw_errno("poll");
  if (n > 0) {
    // What the agent sent is handled before a write can fail: its last words (an error
    // message) are the better report.
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      std::vector<Message> msgs;
      bool open = ch_.read(&msgs);
      for (auto& m : msgs) handle(std::move(m));
      if (!open) throw ClosedError("the agent closed the connection");
    }
    if (fds[0].revents & POLLOUT && !ch_.write())
      throw kiln::Error("the connection to the agent broke while writing");
    if (signal_fd_ >= 0 && fds[1].revents) {
      signalfd_siginfo si;
      while (::read(signal_fd_, &si, sizeof si) == sizeof si) {
        bool any = false;
        for (auto& [id, p] : procs_) {
          if (!p.started || p.exited) continue;
          any = true;
          winsize ws{};
          if (si.ssi_signo != SIGWINCH)
            ch_.send(Signal{id, static_cast<int32_t>(si.ssi_signo)});
          else if (p.terminal && ioctl(p.io.out, TIOCGWINSZ, &ws) == 0)
            ch_.send(Resize{id, ws.ws_row, ws.ws_col});  // the host terminal's new size
        }
        if (!any && si.ssi_signo != SIGWINCH) unforwarded_signal_ = static_cast<int>(si.ssi_signo);
      }
    }
    for (size_t i = first_watch; i < first_stdin; ++i)
      if (fds[i].revents) watches_[i - first_watch].second();
    for (size_t i = first_stdin; i < fds.size(); ++i)
      if (fds[i].revents) send_stdin(ids[i - first_stdin], procs_.at(ids[i - first_stdin]));
  }
  if (ch_.pending() && !ch_.write()) throw kiln::Error("the connection to the agent broke");
}

int32_t AgentClient::start(Start& s, Stdio io) {
  if (!hello_) throw kiln::Error("start before the handshake");
  s.id = next_id_++;
  s.stdin = io.in >= 0;
  ch_.send(s);
  Proc& p = procs_[s.id];
  p.io = io;
  p.terminal = s.terminal;
  // Starting is fork + exec: an agent that does not answer within a minute is broken.
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (!p.started && !p.failed) {
    if (ms_left(deadline) == 0)
      throw kiln::Error("the agent did not answer the start of '" + s.argv[0] + "' within 60 s");
    pump(ms_left(deadline));
  }
  if (p.failed) {
    std::string why = p.error;
    procs_.erase(s.id);
    throw StartError("the agent could not start '" + s.argv[0] + "': " + why);
  }
  return p.pid;
}

void AgentClient::signal(uint32_t id, int sig) {
  ch_.send(Signal{id, sig});
  ch_.write();
}

void AgentClient::shutdown() {
  ch_.send(Shutdown{});
  ch_.write();
}

void AgentClient::watch(int fd, std::function<void()> on_readable) {
  watches_.emplace_back(fd, std::move(on_readable));
}

void AgentClient::resize(uint32_t id, uint16_t rows, uint16_t cols) {
  ch_.send(Resize{id, rows, cols});
  ch_.write();
}

Exit AgentClient::wait(uint32_t id) {
  auto it = procs_.find(id);
  if (it == procs_.end()) throw kiln::Error("wait for unknown process " + std::to_string(id));
  while (!it->second.exited) {
    if (!deadline_) {
      pump(-1);
      continue;
    }
    int left = ms_left(*deadline_);
    if (left == 0) throw DeadlineError("process " + std::to_string(id) + " did not end in time");
    pump(left);
  }
  Exit e = it->second.exit;
  procs_.erase(it);
  return e;
}

void AgentClient::pump_until(const std::function<bool()>& done) {
  while (!done()) pump(-1);
}

int AgentClient::run(Start s, Stdio io) {
  start(s, io);
  return wait(s.id).status();
}

}  // namespace kiln::sandbox
