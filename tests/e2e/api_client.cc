#include "tests/e2e/api_client.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "tests/e2e/kiln_process.h"

extern char** environ;

namespace kiln::e2e {

KilnProcess::KilnProcess(const std::vector<std::string>& args, const std::string& program) {
  const SpawnedKiln child = spawn_kiln(args, program);
  pid_ = child.pid;
  stdin_fd_ = child.stdin_fd;
  reader_ = std::thread([this, o = child.stdout_fd, e = child.stderr_fd] {
    pollfd fds[2] = {{o, POLLIN, 0}, {e, POLLIN, 0}};
    int open = 2;
    while (open > 0) {
      if (::poll(fds, 2, -1) < 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char buf[4096];
        const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
        if (n <= 0) {
          ::close(fds[i].fd);
          fds[i].fd = -1;
          --open;
          continue;
        }
        std::lock_guard lock(mutex_);
        (i == 0 ? out_ : err_).append(buf, static_cast<size_t>(n));
      }
    }
  });
}

KilnProcess::~KilnProcess() {
  if (exit_code_ == -2) wait(0);
  if (stdin_fd_ >= 0) ::close(stdin_fd_);
  if (reader_.joinable()) reader_.join();
}

int KilnProcess::wait(int seconds) {
  if (exit_code_ != -2) return exit_code_;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      exit_code_ = -1;
      return exit_code_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (reader_.joinable()) reader_.join();
  return exit_code_;
}

void KilnProcess::write_stdin(const std::string& data) {
  [[maybe_unused]] ssize_t n = ::write(stdin_fd_, data.data(), data.size());
}

void KilnProcess::signal(int sig) {
  ::kill(pid_, sig);
}

std::string KilnProcess::out() {
  std::lock_guard lock(mutex_);
  return out_;
}

std::string KilnProcess::err() {
  std::lock_guard lock(mutex_);
  return err_;
}

bool KilnProcess::wait_for_output(const std::string& text, int seconds) {
  for (int i = 0; i < seconds * 10; ++i) {
    if (out().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

namespace {

int connect_unix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

bool wait_for_socket(const std::string& path, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = connect_unix(path);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string raw_exchange(const std::string& path, const std::string& bytes) {
  const int fd = connect_unix(path);
  if (fd < 0) return "";
  [[maybe_unused]] ssize_t w = ::write(fd, bytes.data(), bytes.size());
  std::string reply;
  char buf[4096];
  pollfd p{fd, POLLIN, 0};
  // Read until the server closes, or until a full response (headers + Content-Length) arrived.
  while (::poll(&p, 1, 10000) > 0) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
    const size_t end = reply.find("\r\n\r\n");
    if (end == std::string::npos) continue;
    std::string lower = reply.substr(0, end);
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    size_t length = 0;
    if (auto at = lower.find("content-length:"); at != std::string::npos)
      length = std::stoul(lower.substr(at + 15));
    if (reply.size() >= end + 4 + length) break;
  }
  ::close(fd);
  return reply;
}

std::string temp_dir() {
  const char* dir = std::getenv("TMPDIR");
  return dir && *dir ? dir : "/tmp";
}

std::string temp_socket_path(const std::string& prefix) {
  return temp_dir() + "/" + prefix + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(std::rand()) + ".sock";
}

ApiResponse api_request(const std::string& path, const std::string& method,
                        const std::string& target, const std::string& body) {
  std::string request = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n";
  if (!body.empty()) {
    request +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  request += "Connection: close\r\n\r\n" + body;
  const std::string reply = raw_exchange(path, request);
  ApiResponse r;
  if (reply.size() < 12) return r;
  r.status = std::stoi(reply.substr(9, 3));
  const size_t end = reply.find("\r\n\r\n");
  for (size_t line = reply.find("\r\n") + 2; line < end;) {
    const size_t next = reply.find("\r\n", line);
    const std::string h = reply.substr(line, next - line);
    const size_t colon = h.find(':');
    std::string name = h.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    if (colon != std::string::npos)
      r.headers.emplace_back(name, h.substr(std::min(colon + 2, h.size())));
    line = next + 2;
  }
  r.raw_body = end == std::string::npos ? "" : reply.substr(end + 4);
  if (!r.raw_body.empty()) r.body = nlohmann::json::parse(r.raw_body, nullptr, false);
  return r;
}

OpenApi::OpenApi() {
  const char* path = std::getenv("KILN_OPENAPI");
  if (!path) throw std::runtime_error("KILN_OPENAPI is not set (run through meson test)");
  std::ifstream in(path);
  doc_ = nlohmann::json::parse(in);
}

std::vector<std::pair<std::string, std::string>> OpenApi::operations() const {
  std::vector<std::pair<std::string, std::string>> ops;
  for (auto& [path, item] : doc_["paths"].items())
    for (auto& [method, op] : item.items()) ops.emplace_back(method, path);
  return ops;
}

std::string OpenApi::match(const nlohmann::json& schema_in, const nlohmann::json& value,
                           const std::string& where) const {
  nlohmann::json schema = schema_in;
  if (schema.contains("$ref")) {
    const std::string name = schema["$ref"].get<std::string>().substr(21);
    schema = doc_["components"]["schemas"][name];
  }
  const std::string type = schema.value("type", "");
  if (value.is_null()) return "";  // nullable objects (Firecracker's full config)
  if (type == "object") {
    if (!value.is_object()) return where + " is not an object";
    for (const auto& req : schema.value("required", nlohmann::json::array()))
      if (!value.contains(req.get<std::string>()))
        return where + " lacks required " + req.get<std::string>();
    for (auto& [key, v] : value.items()) {
      if (!schema.contains("properties")) break;
      if (!schema["properties"].contains(key)) return where + " has undocumented field " + key;
      if (auto m = match(schema["properties"][key], v, where + "." + key); !m.empty()) return m;
    }
  } else if (type == "string") {
    if (!value.is_string()) return where + " is not a string";
    if (schema.contains("enum") &&
        std::find(schema["enum"].begin(), schema["enum"].end(), value) == schema["enum"].end())
      return where + " is not one of the documented values";
  } else if (type == "integer") {
    if (!value.is_number_integer()) return where + " is not an integer";
  } else if (type == "boolean") {
    if (!value.is_boolean()) return where + " is not a boolean";
  } else if (type == "array") {
    if (!value.is_array()) return where + " is not an array";
  }
  return "";
}

std::string OpenApi::check(const std::string& method, const std::string& path_template,
                           const ApiResponse& r) const {
  const auto& paths = doc_["paths"];
  if (!paths.contains(path_template) || !paths[path_template].contains(method))
    return method + " " + path_template + " is not documented";
  const auto& responses = paths[path_template][method]["responses"];
  const std::string code = std::to_string(r.status);
  if (!responses.contains(code))
    return method + " " + path_template + ": status " + code + " is not documented";
  const auto& resp = responses[code];
  if (!resp.contains("content")) {
    return r.raw_body.empty() ? "" : "status " + code + " documents no body but got " + r.raw_body;
  }
  return match(resp["content"]["application/json"]["schema"], r.body, "response");
}

std::string OpenApi::check_request(const std::string& method, const std::string& path_template,
                                   const nlohmann::json& body) const {
  const auto& op = doc_["paths"][path_template][method];
  if (!op.contains("requestBody")) return "no documented request body";
  return match(op["requestBody"]["content"]["application/json"]["schema"], body, "request");
}

}  // namespace kiln::e2e
