#include "agent/core/agent.h"

#include "agent/core/spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>

namespace kiln::agent {

namespace {

constexpr size_t kMaxConnections = 16;
// Past this many queued bytes to a connection, the agent reads neither from it nor for it.
constexpr size_t kMaxQueued = kMaxFrame;

void set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

}  // namespace

void Agent::add_connection(UniqueFd fd) {
  if (conns_.size() >= kMaxConnections) {
    fprintf(stderr, "kiln-agent: %zu connections open, refusing another\n", conns_.size());
    return;  // closes it
  }
  conns_.emplace_back(std::move(fd));
}

size_t Agent::running() const {
  size_t n = doomed_.size();
  for (const auto& c : conns_) n += c.procs.size();
  return n;
}

void Agent::signal_all(int sig) {
  for (auto& c : conns_)
    for (auto& [id, p] : c.procs)
      if (!p->exited) kill(p->pid, sig);
}

bool Agent::child_exited(pid_t pid, int status) {
  auto record = [&](Process& p) {
    if (p.pid != pid || p.exited) return false;
    p.exited = true;
    p.status = status;
    p.pidfd.reset();
    return true;
  };
  for (auto& c : conns_)
    for (auto& [id, p] : c.procs)
      if (record(*p)) return true;
  for (auto& p : doomed_)
    if (record(*p)) return true;
  return false;
}

void Agent::reap(Process& p) {
  int status;
  pid_t r = waitpid(p.pid, &status, WNOHANG);
  if (r == p.pid) child_exited(p.pid, status);
}

Agent::Process* Agent::find(Conn& c, uint32_t id, const char* what) {
  auto it = c.procs.find(id);
  if (it != c.procs.end()) return it->second.get();
  if (id != 0 && id <= c.last_id) return nullptr;
  throw ProtocolError(std::string(what) + " for process " + std::to_string(id) +
                      ", which was never started");
}

void Agent::start(Conn& c, Start&& s) {
  if (s.id <= c.last_id)
    throw ProtocolError("start: process id " + std::to_string(s.id) +
                        " is not above the last one (" + std::to_string(c.last_id) + ")");
  c.last_id = s.id;
  if (c.procs.size() >= kMaxProcesses) {
    c.ch.send(Error{s.id, "too many processes on this connection (limit " +
                              std::to_string(kMaxProcesses) + ")"});
    return;
  }
  Spawned sp;
  try {
    sp = spawn(s);
  } catch (const std::exception& e) {
    c.ch.send(Error{s.id, e.what()});
    return;
  }
  auto p = std::make_unique<Process>();
  p->id = s.id;
  p->pid = sp.pid;
  p->pidfd = std::move(sp.pidfd);
  p->in = std::move(sp.stdin_fd);
  p->out[0].fd = std::move(sp.stdout_fd);
  p->out[1].fd = std::move(sp.stderr_fd);
  for (int fd : {p->in.get(), p->out[0].fd.get(), p->out[1].fd.get()})
    if (fd >= 0) set_nonblocking(fd);
  if (!s.stdin) p->in_allowed = 0;
  ++started_total_;
  c.ch.send(Started{s.id, sp.pid});
  c.procs.emplace(s.id, std::move(p));
}

void Agent::handle(Conn& c, Message&& m) {
  if (!c.greeted) {
    auto* h = std::get_if<Hello>(&m);
    if (!h) throw ProtocolError(std::string("expected hello first, got ") + message_name(m));
    if (h->version != kProtocolVersion)
      throw ProtocolError("protocol version " + std::to_string(h->version) +
                          " is not supported; this agent speaks version " +
                          std::to_string(kProtocolVersion));
    c.greeted = true;
    c.ch.send(hello_);
    return;
  }
  std::visit(
      [&](auto&& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, Start>) {
          if (configurer_ && !configured_)
            c.ch.send(Error{v.id,
                            "the sandbox is not set up yet (this agent booted warm: the "
                            "host sends configure first)"});
          else
            start(c, std::move(v));
        } else if constexpr (std::is_same_v<T, Configure>) {
          if (!configurer_ || configured_)
            throw ProtocolError(configured_ ? "configure: the sandbox is set up already"
                                            : "configure: this agent did not boot warm");
          configured_ = true;  // a failed set-up is not retried: the host stops the VM
          try {
            configurer_(v);
          } catch (const std::exception& e) {
            throw ProtocolError(std::string("configure: ") + e.what());
          }
          c.ch.send(Configured{});
        } else if constexpr (std::is_same_v<T, Signal>) {
          Process* p = find(c, v.id, "signal");
          if (p && !p->exited) kill(p->pid, v.signal);
        } else if constexpr (std::is_same_v<T, Resize>) {
          Process* p = find(c, v.id, "resize");
          winsize ws{v.rows, v.cols, 0, 0};
          if (p && p->out[0].fd && ioctl(p->out[0].fd.get(), TIOCSWINSZ, &ws) < 0 &&
              errno == ENOTTY)
            throw ProtocolError("resize: process " + std::to_string(v.id) + " has no terminal");
        } else if constexpr (std::is_same_v<T, CloseStdin>) {
          if (Process* p = find(c, v.id, "close_stdin")) p->in_close = true;
        } else if constexpr (std::is_same_v<T, Data>) {
          if (v.stream != Stream::Stdin)
            throw ProtocolError(std::string("data on ") + stream_name(v.stream) + " from the host");
          Process* pp = find(c, v.id, "data");
          if (!pp) return;
          Process& p = *pp;
          if (p.in_close) throw ProtocolError("stdin data after close_stdin");
          if (v.bytes.size() > p.in_allowed)
            throw ProtocolError("stdin data beyond the credit granted (" +
                                std::to_string(v.bytes.size()) + " > " +
                                std::to_string(p.in_allowed) + ")");
          p.in_allowed -= static_cast<uint32_t>(v.bytes.size());
          if (p.in)
            p.in_buf.insert(p.in_buf.end(), v.bytes.begin(), v.bytes.end());
          else
            c.ch.send(Credit{p.id, Stream::Stdin, static_cast<uint32_t>(v.bytes.size())});
        } else if constexpr (std::is_same_v<T, Shutdown>) {
          shutdown_ = true;
        } else if constexpr (std::is_same_v<T, Credit>) {
          if (v.stream == Stream::Stdin) throw ProtocolError("credit for stdin from the host");
          Process* p = find(c, v.id, "credit");
          if (!p) return;
          Output& o = p->out[v.stream == Stream::Stdout ? 0 : 1];
          if (static_cast<uint64_t>(o.credit) + v.bytes > kMaxWindow)
            throw ProtocolError("credit above the window limit");
          o.credit += v.bytes;
        } else {
          throw ProtocolError(std::string("unexpected '") + message_name(m) +
                              "' message from the host");
        }
      },
      std::move(m));
}

void Agent::pump_stdin(Conn& c, Process& p) {
  while (p.in && p.in_pos < p.in_buf.size()) {
    ssize_t n = write(p.in.get(), p.in_buf.data() + p.in_pos, p.in_buf.size() - p.in_pos);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    size_t done = n < 0 ? p.in_buf.size() - p.in_pos : static_cast<size_t>(n);
    if (n < 0) p.in.reset();  // EPIPE: the process closed its stdin; later data is dropped
    p.in_pos += done;
    p.in_allowed += static_cast<uint32_t>(done);
    c.ch.send(Credit{p.id, Stream::Stdin, static_cast<uint32_t>(done)});
  }
  p.in_buf.clear();
  p.in_pos = 0;
  if (p.in_close && p.in) {
    if (isatty(p.in.get())) {
      char eot = 4;  // a terminal's end of input is ^D (closing the master would hang it up)
      if (write(p.in.get(), &eot, 1) < 0 && errno == EAGAIN) return;
    }
    p.in.reset();
  }
}

bool Agent::pump_output(Conn& c, Process& p, int which) {
  Output& o = p.out[which];
  if (!o.fd || o.credit == 0) return true;
  std::vector<uint8_t> buf(std::min<size_t>(o.credit, kMaxData));
  ssize_t n = read(o.fd.get(), buf.data(), buf.size());
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
  if (n <= 0) {  // EOF, or EIO: a pty whose last slave closed
    o.fd.reset();
    return true;
  }
  buf.resize(static_cast<size_t>(n));
  o.credit -= static_cast<uint32_t>(n);
  c.ch.send(Data{p.id, which == 0 ? Stream::Stdout : Stream::Stderr, std::move(buf)});
  return true;
}

void Agent::finish(Conn& c) {
  for (auto it = c.procs.begin(); it != c.procs.end();) {
    Process& p = *it->second;
    // An exited process's output is what its pipes hold now: drained as credit allows, then
    // done, even if a child it left behind still holds them open (that child's later output
    // is not this process's; it is killed at power-off).
    for (int i = 0; p.exited && i < 2; ++i)
      while (p.out[i].fd && p.out[i].credit)
        if (!pump_output(c, p, i)) p.out[i].fd.reset();
    if (!p.exited || p.out[0].fd || p.out[1].fd) {
      ++it;
      continue;
    }
    Exit e{p.id, 0, 0};
    if (WIFSIGNALED(p.status))
      e.signal = WTERMSIG(p.status);
    else
      e.code = WEXITSTATUS(p.status);
    c.ch.send(e);
    it = c.procs.erase(it);
  }
}

void Agent::drop(std::list<Conn>::iterator it) {
  for (auto& [id, p] : it->procs) {
    if (p->exited) continue;
    kill(p->pid, SIGKILL);
    p->in.reset();
    p->out[0].fd.reset();
    p->out[1].fd.reset();
    doomed_.push_back(std::move(p));
  }
  conns_.erase(it);
}

bool Agent::poll_once(int timeout_ms, int extra_fd) {
  std::vector<pollfd> fds;
  std::vector<std::function<void(short)>> on;
  auto watch = [&](int fd, short events, std::function<void(short)> f) {
    fds.push_back({fd, events, 0});
    on.push_back(std::move(f));
  };
  bool extra = false;
  if (extra_fd >= 0) watch(extra_fd, POLLIN, [&](short) { extra = true; });
  if (listener_)
    watch(listener_.get(), POLLIN, [this](short) {
      int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) add_connection(UniqueFd(fd));
    });
  std::vector<std::list<Conn>::iterator> dead;
  for (auto it = conns_.begin(); it != conns_.end(); ++it) {
    Conn& c = *it;
    short ev = c.ch.pending() ? POLLOUT : 0;
    bool room = c.ch.pending() < kMaxQueued;
    if (room && !c.closing) ev |= POLLIN;
    watch(c.ch.fd(), ev, [this, &c, &dead, it](short re) {
      if (re & (POLLERR | POLLNVAL)) return dead.push_back(it);
      if (re & POLLOUT && !c.ch.write()) return dead.push_back(it);
      if (!(re & (POLLIN | POLLHUP)) || c.closing) return;
      std::vector<Message> msgs;
      try {
        bool open = c.ch.read(&msgs);
        for (auto& m : msgs) handle(c, std::move(m));
        if (!open) dead.push_back(it);
      } catch (const std::exception& e) {
        fprintf(stderr, "kiln-agent: closing a connection: %s\n", e.what());
        c.ch.send(Error{0, e.what()});
        c.closing = true;
      }
    });
    for (auto& [id, pp] : c.procs) {
      Process* p = pp.get();
      if (p->pidfd) watch(p->pidfd.get(), POLLIN, [this, p](short) { reap(*p); });
      if (c.closing) continue;
      if (p->in && (p->in_pos < p->in_buf.size() || p->in_close))
        watch(p->in.get(), POLLOUT, [this, &c, p](short) { pump_stdin(c, *p); });
      for (int i = 0; i < 2; ++i)
        if (p->out[i].fd && p->out[i].credit && room)
          watch(p->out[i].fd.get(), POLLIN, [this, &c, p, i](short) { pump_output(c, *p, i); });
    }
  }
  for (auto& p : doomed_)
    if (p->pidfd) watch(p->pidfd.get(), POLLIN, [this, q = p.get()](short) { reap(*q); });

  int n = poll(fds.data(), fds.size(), timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return false;
    throw std::runtime_error(std::string("poll: ") + std::strerror(errno));
  }
  for (size_t i = 0; i < fds.size(); ++i)
    if (fds[i].revents) on[i](fds[i].revents);
  for (auto& c : conns_) {
    if (!c.closing) finish(c);
    if (c.ch.pending()) c.ch.write();
  }
  for (auto it = conns_.begin(); it != conns_.end(); ++it)
    if (it->closing && !it->ch.pending() && std::find(dead.begin(), dead.end(), it) == dead.end())
      dead.push_back(it);
  for (auto it : dead) drop(it);
  std::erase_if(doomed_, [](const auto& p) { return p->exited; });
  return extra;
}

}  // namespace kiln::agent
