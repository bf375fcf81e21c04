#include "sandbox/control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstring>

#include "base/error.h"
#include "base/unix_socket.h"

namespace kiln::sandbox {

using nlohmann::json;

namespace {

constexpr size_t kMaxLine = 512;

sockaddr_un address(const std::string& path) {
  auto a = unix_address(path);
  if (!a) throw kiln::Error("control socket path " + path + " is too long (set KILN_SANDBOX_DIR)");
  return *a;
}

// One '\n'-terminated line of at most kMaxLine bytes within `ms`; false otherwise.
bool read_line(int fd, std::string* line, int ms) {
  line->clear();
  while (line->size() < kMaxLine) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0) return false;
    char buf[kMaxLine];
    ssize_t n = recv(fd, buf, kMaxLine - line->size(), MSG_PEEK);
    if (n <= 0) return false;
    const char* nl = static_cast<const char*>(std::memchr(buf, '\n', static_cast<size_t>(n)));
    size_t take = nl ? static_cast<size_t>(nl - buf) + 1 : static_cast<size_t>(n);
    if (recv(fd, buf, take, 0) != static_cast<ssize_t>(take)) return false;
    line->append(buf, take);
    if (nl) {
      line->pop_back();
      return true;
    }
  }
  return false;
}

void send_line(int fd, const json& j) {
  std::string s = j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  (void)!::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
}

}  // namespace

ControlServer::ControlServer(const std::string& path) : path_(path) {
  sockaddr_un a = address(path);
  listener_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener_) throw_errno("socket");
  unlink(path.c_str());
  mode_t old = umask(0177);
  int rc = bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  umask(old);
  if (rc < 0) throw_errno("bind " + path);
  if (listen(listener_.get(), 8) < 0) throw_errno("listen " + path);
}

ControlServer::~ControlServer() {
  unlink(path_.c_str());
}

void ControlServer::serve_one(const ControlHandlers& h) {
  UniqueFd c(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!c) return;  // EAGAIN: another poll round
  std::string line;
  if (!read_line(c.get(), &line, 1000))
    return send_line(c.get(), {{"error", "want one JSON line within 1 s"}});
  json req = json::parse(line, nullptr, false);
  std::string err;
  if (req.is_object() && req.size() == 1 && req.contains("signal") &&
      req["signal"].is_number_unsigned() && req["signal"].get<uint64_t>() >= 1 &&
      req["signal"].get<uint64_t>() <= 64)
    err = h.on_signal(req["signal"].get<int>());
  else if (req.is_object() && req.size() == 1 && req.contains("start") && req["start"] == true)
    err = h.on_start ? h.on_start() : "this sandbox has no start gate (it started on its own)";
  else
    err = "want {\"signal\": 1..64} or {\"start\": true}";
  send_line(c.get(), err.empty() ? json{{"ok", true}} : json{{"error", err}});
}

namespace {

// One request and its answer; throws kiln::Error with the sandbox's refusal.
void request(const std::string& path, const json& req, int answer_ms) {
  sockaddr_un a = address(path);
  UniqueFd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) throw_errno("socket");
  if (connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
    throw_errno("connect " + path + " (has the sandbox ended?)");
  send_line(s.get(), req);
  std::string line;
  if (!read_line(s.get(), &line, answer_ms))
    throw kiln::Error("the sandbox did not answer through " + path);
  json r = json::parse(line, nullptr, false);
  if (r.is_object() && r.contains("ok")) return;
  if (r.is_object() && r.contains("error") && r["error"].is_string())
    throw kiln::Error(r["error"].get<std::string>());
  throw kiln::Error("the sandbox answered '" + line.substr(0, 80) + "' through " + path);
}

}  // namespace

void request_signal(const std::string& path, int sig) {
  request(path, {{"signal", sig}}, 10000);
}

// Starting is the agent's fork + exec, which it answers within 60 s or is broken.
void request_start(const std::string& path) {
  request(path, {{"start", true}}, 70000);
}

}  // namespace kiln::sandbox
