#include "api/http/api_server.h"

#include <poll.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "api/http/http_parser.h"
#include "base/error.h"
#include "base/event_fd.h"
#include "base/log_limiter.h"
#include "base/unique_fd.h"
#include "base/unix_socket.h"

namespace kiln::api {

namespace {

// epoll data.u64 of the fixed fds; connections count up from kFirstConnectionId, never reused,
// so a late response can never reach a newer connection.
constexpr uint64_t kListenId = 0;
constexpr uint64_t kStopId = 1;
constexpr uint64_t kMailboxId = 2;
constexpr uint64_t kFirstConnectionId = 16;

constexpr size_t kReadChunk = 64 * 1024;
// After a connection's last response: bytes read and discarded while waiting for the client to
// close, so that closing does not turn unread input into ECONNRESET for the client.
constexpr size_t kMaxDrain = 1024 * 1024;

struct Posted {
  uint64_t connection;
  uint64_t seq;
  HttpResponse response;
};

// Where Respond callbacks (any thread) leave responses for the server thread. Every outstanding
// Respond shares it, so a late answer after the server is gone is dropped here, harmlessly.
class Mailbox {
 public:
  Mailbox() : wake_(std::in_place) {}
  int fd() const { return wake_->fd(); }  // server side, before close()
  void post(Posted posted) {
    std::lock_guard lock(mu_);
    if (!wake_) return;
    items_.push_back(std::move(posted));
    wake_->signal();
  }
  std::deque<Posted> take() {
    std::lock_guard lock(mu_);
    if (wake_) wake_->consume();
    return std::exchange(items_, {});
  }
  // The server is going: drops queued and future posts and closes the eventfd now, even if
  // some handler still holds a Respond.
  void close() {
    std::lock_guard lock(mu_);
    wake_.reset();
    items_.clear();
  }

 private:
  std::mutex mu_;
  std::optional<EventFd> wake_;
  std::deque<Posted> items_;
};

// Behind each Respond: answers once; if never answered, answers 500 when the last copy goes.
class PendingResponse {
 public:
  PendingResponse(std::shared_ptr<Mailbox> mailbox, uint64_t connection, uint64_t seq)
      : mailbox_(std::move(mailbox)), connection_(connection), seq_(seq) {}
  PendingResponse(const PendingResponse&) = delete;
  PendingResponse& operator=(const PendingResponse&) = delete;
  ~PendingResponse() {
    if (!done_.load())
      mailbox_->post({connection_, seq_, fault_response(500, "the request got no response")});
  }
  void respond(HttpResponse response) {
    if (done_.exchange(true)) {
      spdlog::warn("api: a request was answered twice; the second response is ignored");
      return;
    }
    mailbox_->post({connection_, seq_, std::move(response)});
  }

 private:
  std::shared_ptr<Mailbox> mailbox_;
  uint64_t connection_;
  uint64_t seq_;
  std::atomic<bool> done_{false};
};

using Clock = std::chrono::steady_clock;

struct Connection {
  uint64_t id = 0;
  Clock::time_point last_progress;  // last byte read or written (or accepted)
  Clock::time_point request_start;  // first byte of the incomplete request

  UniqueFd fd;
  HttpParser parser;
  std::string out;  // response being written
  size_t out_pos = 0;
  bool in_flight = false;  // handed to the handler, not answered yet
  uint64_t seq = 0;        // of the latest request handed out
  std::string method, path;
  bool keep_alive = true;
  bool peer_eof = false;  // the client shut down its side
  bool closing = false;   // after `out`: shutdown(SHUT_WR) and drain
  bool draining = false;
  size_t drained = 0;
  bool closed = false;
  uint32_t interest = 0;
};

sockaddr_un api_address(const std::string& path) {
  auto addr = unix_address(path);
  if (!addr)
    throw UsageError("API socket path '" + path + "' must be 1 to " + std::to_string(kMaxUnixPath) +
                     " bytes long");
  return *addr;
}

// Refuses an existing `path` unless it is a socket nobody accepts on, which is removed.
void clear_stale_socket(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) < 0) {
    if (errno == ENOENT) return;
    throw UsageError(errno_message("API socket path " + path));
  }
  if (!S_ISSOCK(st.st_mode))
    throw UsageError("API socket path " + path + " already exists and is not a socket");
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe) throw_errno("socket(AF_UNIX)");
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0 ||
      errno == EAGAIN || errno == EINPROGRESS)
    throw UsageError("API socket " + path + " is in use by another process");
  if (errno != ECONNREFUSED)
    throw UsageError(errno_message("API socket path " + path + " exists and cannot be checked"));
  if (::unlink(path.c_str()) < 0 && errno != ENOENT)
    throw UsageError(errno_message("cannot remove stale API socket " + path));
  spdlog::info("api: replaced stale socket {}", path);
}

thread_local const void* t_server_thread_of = nullptr;

}  // namespace

class ApiServer::Impl {
 public:
  Impl(std::string path, Handler handler, Limits limits);
  ~Impl();
  void start();
  void stop();
  const std::string& path() const { return path_; }

 private:
  void run();
  void handle_event(uint64_t id, uint32_t events);
  void accept_all();
  void set_accepting(bool on);
  void update_listen();
  bool close_longest_idle();
  std::optional<Clock::time_point> deadline(const Connection& c) const;
  int next_timeout_ms() const;
  void expire_connections();
  void deliver();
  void on_io(Connection& c, uint32_t events);
  void read_some(Connection& c);
  void advance(Connection& c);
  void dispatch(Connection& c, HttpRequest request);
  void send_response(Connection& c, HttpResponse response, bool keep_alive);
  void flush(Connection& c);
  void update_interest(Connection& c);
  void close_connection(Connection& c, const char* why);
  static bool wants_read(const Connection& c) {
    return !c.closed &&
           (c.draining || (!c.in_flight && c.out.empty() && !c.closing && !c.peer_eof));
  }
  static bool is_idle(const Connection& c) {
    return !c.closed && !c.in_flight && c.out.empty() && !c.closing && !c.draining &&
           !c.parser.in_request();
  }

  const std::string path_;
  const Handler handler_;
  const Limits limits_;
  UniqueFd listen_;
  UniqueFd epoll_;
  EventFd stop_;
  std::shared_ptr<Mailbox> mailbox_ = std::make_shared<Mailbox>();
  dev_t dev_ = 0;
  ino_t ino_ = 0;

  std::mutex thread_mu_;
  std::thread thread_;
  bool started_ = false;

  // Server thread only.
  std::map<uint64_t, Connection> connections_;
  size_t open_ = 0;
  uint64_t next_id_ = kFirstConnectionId;
  bool accepting_ = true;       // false for a while after accept() failed (out of fds)
  bool listen_enabled_ = true;  // EPOLLIN on the listening socket
  LogLimiter over_limit_log_;
  std::vector<char> read_buf_ = std::vector<char>(kReadChunk);
};

ApiServer::Impl::Impl(std::string path, Handler handler, Limits limits)
    : path_(std::move(path)), handler_(std::move(handler)), limits_(limits) {
  if (limits_.max_connections == 0) throw Error("ApiServer: max_connections must be at least 1");
  const sockaddr_un addr = api_address(path_);
  clear_stale_socket(path_, addr);
  listen_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listen_) throw_errno("socket(AF_UNIX)");
  // Linux creates the socket file with the socket inode's mode (minus umask): 0600 from the
  // start, with no window in which others could connect and no process-wide umask change.
  if (::fchmod(listen_.get(), 0600) < 0) throw_errno("fchmod(API socket)");
  if (::bind(listen_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0) {
    if (errno == EADDRINUSE) throw UsageError("API socket path " + path_ + " already exists");
    throw_errno("bind(" + path_ + ")");
  }
  try {
    struct stat st {};
    if (::chmod(path_.c_str(), 0600) < 0) throw_errno("chmod(" + path_ + ")");
    if (::stat(path_.c_str(), &st) < 0) throw_errno("stat(" + path_ + ")");
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    if (::listen(listen_.get(), SOMAXCONN) < 0) throw_errno("listen(" + path_ + ")");
    epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) throw_errno("epoll_create1");
    for (auto [fd, id] : {std::pair{listen_.get(), kListenId}, std::pair{stop_.fd(), kStopId},
                          std::pair{mailbox_->fd(), kMailboxId}}) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = id;
      if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) throw_errno("epoll_ctl(ADD)");
    }
  } catch (...) {
    ::unlink(path_.c_str());
    throw;
  }
  spdlog::info("api: listening on {}", path_);
}

ApiServer::Impl::~Impl() {
  stop();
  mailbox_->close();
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
    ::unlink(path_.c_str());
}

void ApiServer::Impl::start() {
  std::lock_guard lock(thread_mu_);
  if (started_) throw Error("ApiServer::start() called twice");
  started_ = true;
  thread_ = std::thread([this] {
    t_server_thread_of = this;
    ::pthread_setname_np(::pthread_self(), "kiln-api");
    try {
      run();
    } catch (const std::exception& e) {
      spdlog::error("api: server stopped: {}", e.what());
    }
    connections_.clear();  // closes every client fd
    open_ = 0;
  });
}

void ApiServer::Impl::stop() {
  stop_.signal();
  if (t_server_thread_of == this) return;  // from a handler: the destructor joins
  std::lock_guard lock(thread_mu_);
  if (thread_.joinable()) thread_.join();
}

void ApiServer::Impl::run() {
  std::array<epoll_event, 64> events;
  for (;;) {
    // Out of fds: retry accepting every 100 ms (or on any other event) instead of spinning.
    int timeout = next_timeout_ms();
    if (!accepting_ && (timeout < 0 || timeout > 100)) timeout = 100;
    const int n =
        ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("epoll_wait");
    }
    if (!accepting_) set_accepting(true);
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kStopId) return;
      handle_event(events[i].data.u64, events[i].events);
    }
    expire_connections();
    std::erase_if(connections_, [](const auto& entry) { return entry.second.closed; });
  }
}

// The server thread's boundary: a failure while serving one connection closes that connection;
// nothing a client does may stop the server.
void ApiServer::Impl::handle_event(uint64_t id, uint32_t events) {
  Connection* c = nullptr;
  try {
    if (id == kListenId) {
      accept_all();
    } else if (id == kMailboxId) {
      deliver();
    } else if (auto it = connections_.find(id); it != connections_.end() && !it->second.closed) {
      c = &it->second;
      on_io(*c, events);
    }
  } catch (const std::exception& e) {
    spdlog::error("api: {}: {}", c ? "serving a connection failed" : "server event failed",
                  e.what());
    if (c) close_connection(*c, "failed");
  }
}

void ApiServer::Impl::set_accepting(bool on) {
  accepting_ = on;
  update_listen();
}

// EPOLLIN on the listening socket unless accept() just failed or every connection is taken.
void ApiServer::Impl::update_listen() {
  const bool want = accepting_ && open_ < limits_.max_connections;
  if (want == listen_enabled_) return;
  epoll_event ev{};
  ev.events = want ? uint32_t{EPOLLIN} : 0u;
  ev.data.u64 = kListenId;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, listen_.get(), &ev) < 0) {
    spdlog::error("api: {}", errno_message("epoll_ctl(MOD listen)"));  // retried on the next call
    return;
  }
  listen_enabled_ = want;
}

// Makes room for a new client: closes the connection that has been idle longest.
bool ApiServer::Impl::close_longest_idle() {
  Connection* oldest = nullptr;
  for (auto& [id, c] : connections_)
    if (is_idle(c) && (!oldest || c.last_progress < oldest->last_progress)) oldest = &c;
  if (!oldest) return false;
  close_connection(*oldest, "idle, and a new client needs the slot");
  return true;
}

std::optional<Clock::time_point> ApiServer::Impl::deadline(const Connection& c) const {
  if (c.closed || c.in_flight) return std::nullopt;  // the handler has no time limit
  if (!c.out.empty() || c.closing || c.draining) return c.last_progress + limits_.request_timeout;
  if (c.parser.in_request()) return c.request_start + limits_.request_timeout;
  return c.last_progress + limits_.idle_timeout;
}

// Milliseconds until the next connection deadline (rounded up), or -1 for none.
int ApiServer::Impl::next_timeout_ms() const {
  std::optional<Clock::time_point> next;
  for (const auto& [id, c] : connections_)
    if (auto d = deadline(c); d && (!next || *d < *next)) next = d;
  if (!next) return -1;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - Clock::now()).count();
  return static_cast<int>(std::clamp<decltype(left)>(left, 0, 60'000));
}

void ApiServer::Impl::expire_connections() {
  const Clock::time_point now = Clock::now();
  for (auto& [id, c] : connections_) {
    const auto d = deadline(c);
    if (!d || *d > now) continue;
    if (is_idle(c)) {
      close_connection(c, "idle timeout");
    } else if (c.out.empty() && !c.draining && c.parser.in_request()) {
      // Best effort: one non-blocking write of the 408, then close.
      const std::string out = serialize(
          fault_response(408, "the request did not arrive whole within " +
                                  std::to_string(limits_.request_timeout.count()) + " ms"),
          false);
      [[maybe_unused]] ssize_t n =
          ::send(c.fd.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      close_connection(c, "request timeout");
    } else {
      close_connection(c, "client stopped reading or did not close");
    }
  }
}

void ApiServer::Impl::accept_all() {
  for (;;) {
    if (open_ >= limits_.max_connections) {
      pollfd pending{listen_.get(), POLLIN, 0};
      if (::poll(&pending, 1, 0) != 1) return;  // nobody is waiting: keep every connection
      if (!close_longest_idle()) {
        if (over_limit_log_.allow())
          spdlog::warn("api: {} connections open, none idle; new clients wait", open_);
        update_listen();  // off until a connection closes
        return;
      }
    }
    UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      spdlog::warn("api: {}", errno_message("accept"));
      set_accepting(false);
      return;
    }
    const uint64_t id = next_id_++;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = id;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &ev) < 0) {
      spdlog::warn("api: {}", errno_message("epoll_ctl(ADD connection)"));
      continue;
    }
    Connection& c = connections_[id];
    c.id = id;
    c.fd = std::move(fd);
    c.interest = ev.events;
    c.last_progress = Clock::now();
    ++open_;
    spdlog::debug("api: connection {} accepted", id);
  }
}

void ApiServer::Impl::deliver() {
  for (Posted& posted : mailbox_->take()) {
    auto it = connections_.find(posted.connection);
    if (it == connections_.end() || it->second.closed || !it->second.in_flight ||
        it->second.seq != posted.seq) {
      spdlog::debug("api: response {} for closed connection {} dropped", posted.response.status,
                    posted.connection);
      continue;
    }
    Connection& c = it->second;
    c.in_flight = false;
    send_response(c, std::move(posted.response), c.keep_alive);
  }
}

void ApiServer::Impl::on_io(Connection& c, uint32_t events) {
  if (events & (EPOLLERR | EPOLLHUP)) {
    close_connection(c, "client hung up");  // nothing more can be written to it
    return;
  }
  if (events & EPOLLOUT) flush(c);
  if (!c.closed && (events & (EPOLLIN | EPOLLRDHUP))) read_some(c);
  if (!c.closed) update_interest(c);
}

void ApiServer::Impl::read_some(Connection& c) {
  while (wants_read(c)) {
    const ssize_t n = ::recv(c.fd.get(), read_buf_.data(), read_buf_.size(), 0);
    if (n > 0) {
      c.last_progress = Clock::now();
      if (!c.parser.in_request()) c.request_start = c.last_progress;
      if (c.draining) {
        c.drained += static_cast<size_t>(n);
        if (c.drained > kMaxDrain)
          close_connection(c, "client kept sending after the last response");
        continue;
      }
      c.parser.feed(std::string_view(read_buf_.data(), static_cast<size_t>(n)));
      advance(c);
    } else if (n == 0) {
      c.peer_eof = true;
      if (c.draining)
        close_connection(c, "closed after the last response");
      else
        advance(c);
      return;
    } else if (errno != EINTR) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) close_connection(c, "read failed");
      return;
    }
  }
}

// If the connection is idle (nothing in flight or being written), takes its next request.
void ApiServer::Impl::advance(Connection& c) {
  if (c.closed || c.in_flight || c.closing || c.draining || !c.out.empty()) return;
  HttpRequest request;
  switch (c.parser.next(request)) {
    case HttpParser::Status::kRequest:
      dispatch(c, std::move(request));
      return;
    case HttpParser::Status::kError:
      c.method.clear();
      c.path.clear();
      spdlog::debug("api: connection {}: bad request: {} {}", c.id, c.parser.error().status,
                    c.parser.error().reason);
      send_response(c, fault_response(c.parser.error().status, c.parser.error().reason), false);
      return;
    case HttpParser::Status::kIncomplete:
      if (c.parser.take_expect_continue()) {
        c.out = "HTTP/1.1 100 Continue\r\n\r\n";
        flush(c);
      } else if (c.peer_eof) {
        close_connection(c, c.parser.buffered() ? "client closed mid-request" : "client closed");
      }
      return;
  }
}

void ApiServer::Impl::dispatch(Connection& c, HttpRequest request) {
  c.in_flight = true;
  c.keep_alive = request.keep_alive;
  c.method = request.method;
  c.path = request.path;
  spdlog::debug("api: connection {}: {} {}", c.id, c.method, c.path);
  auto pending = std::make_shared<PendingResponse>(mailbox_, c.id, ++c.seq);
  Respond respond = [pending](HttpResponse response) { pending->respond(std::move(response)); };
  try {
    handler_(std::move(request), respond);
  } catch (const std::exception& e) {
    spdlog::error("api: handler for {} {} failed: {}", c.method, c.path, e.what());
    respond(fault_response(500, std::string("internal error: ") + e.what()));
  } catch (...) {
    spdlog::error("api: handler for {} {} failed", c.method, c.path);
    respond(fault_response(500, "internal error"));
  }
}

void ApiServer::Impl::send_response(Connection& c, HttpResponse response, bool keep_alive) {
  if (response.status < 200 || response.status > 599) {
    spdlog::error("api: handler answered {} {} with invalid status {}", c.method, c.path,
                  response.status);
    response = fault_response(500, "invalid response status " + std::to_string(response.status));
  }
  spdlog::debug("api: connection {}: {} {} -> {}", c.id, c.method, c.path, response.status);
  c.out = serialize(response, keep_alive);
  c.out_pos = 0;
  if (c.method == "HEAD" && response.status != 204 && response.status != 304)
    c.out.resize(c.out.size() - response.body.size());  // headers as for GET, no body
  if (!keep_alive) c.closing = true;
  flush(c);
}

void ApiServer::Impl::flush(Connection& c) {
  const bool had_output = !c.out.empty();
  while (c.out_pos < c.out.size()) {
    const ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_pos, c.out.size() - c.out_pos,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      c.out_pos += static_cast<size_t>(n);
      c.last_progress = Clock::now();
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      update_interest(c);  // EPOLLOUT resumes
      return;
    } else if (errno != EINTR) {
      close_connection(c, "write failed");
      return;
    }
  }
  c.out = std::string();
  c.out_pos = 0;
  if (c.closing) {
    c.closing = false;
    c.draining = true;
    ::shutdown(c.fd.get(), SHUT_WR);  // the client sees EOF; it closes, then so do we
    if (c.peer_eof) {
      close_connection(c, "done");
      return;
    }
  } else {
    // A pipelined request may be waiting; the rest of it has its full time from now.
    if (had_output) c.request_start = Clock::now();
    advance(c);
  }
  if (!c.closed) update_interest(c);
}

void ApiServer::Impl::update_interest(Connection& c) {
  uint32_t want = 0;
  if (wants_read(c)) want |= EPOLLIN | EPOLLRDHUP;
  if (c.out_pos < c.out.size()) want |= EPOLLOUT;
  if (want == c.interest) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.u64 = c.id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev) < 0) {
    close_connection(c, "epoll_ctl failed");
    return;
  }
  c.interest = want;
}

void ApiServer::Impl::close_connection(Connection& c, const char* why) {
  if (c.closed) return;
  spdlog::debug("api: connection {} closed: {}", c.id, why);
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
  c.fd.reset();
  c.closed = true;
  c.out = std::string();
  --open_;
  update_listen();  // a client waiting in the backlog may come in
}

ApiServer::ApiServer(std::string path, Handler handler, Limits limits)
    : impl_(std::make_unique<Impl>(std::move(path), std::move(handler), limits)) {}
ApiServer::~ApiServer() = default;
void ApiServer::start() {
  impl_->start();
}
void ApiServer::stop() {
  impl_->stop();
}
const std::string& ApiServer::path() const {
  return impl_->path();
}

}  // namespace kiln::api
