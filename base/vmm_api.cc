#include "base/vmm_api.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "base/error.h"
#include "base/unique_fd.h"
#include "base/unix_socket.h"

namespace kiln {

namespace {

// Whether `text` holds a whole answer: its head, and as much body as Content-Length says (none
// for 204 and 304).
bool answer_complete(const std::string& text) {
  auto head_end = text.find("\r\n\r\n");
  if (head_end == std::string::npos) return false;
  std::string head = text.substr(0, head_end);
  for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (head.compare(0, 12, "http/1.1 204") == 0 || head.compare(0, 12, "http/1.1 304") == 0)
    return true;
  auto at = head.find("\r\ncontent-length:");
  if (at == std::string::npos) return false;
  size_t length = std::strtoul(head.c_str() + at + 17, nullptr, 10);
  return text.size() >= head_end + 4 + length;
}

}  // namespace

ApiReply vmm_api_call(const std::string& socket_path, const std::string& method,
                      const std::string& path, const std::string& body, int timeout_ms) {
  auto fail = [&](const std::string& what) {
    return kiln::Error("the VMM's API at " + socket_path + ": " + what);
  };
  auto a = unix_address(socket_path);
  if (!a) throw fail("the path is empty or too long");
  UniqueFd s = connect_unix(*a);
  if (!s) throw fail(std::string("connect: ") + std::strerror(errno));
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
  if (!body.empty())
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  if (send(s.get(), req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
    throw fail(std::string("send: ") + std::strerror(errno));

  std::string text;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    pollfd p{s.get(), POLLIN, 0};
    if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) throw fail("no answer in time");
    char buf[4096];
    ssize_t n = read(s.get(), buf, sizeof buf);
    if (n < 0) throw fail(std::string("read: ") + std::strerror(errno));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > 65536) throw fail("an answer larger than 64 KiB");
    if (text.size() >= 5 && text.compare(0, 5, "HTTP/") != 0) throw fail("not an HTTP answer");
    if (answer_complete(text)) break;  // a server that keeps the connection open
  }
  // "HTTP/1.1 204 No Content\r\n...\r\n\r\nbody"
  ApiReply r;
  auto head_end = text.find("\r\n\r\n");
  if (text.rfind("HTTP/1.", 0) != 0 || text.size() < 12 || head_end == std::string::npos)
    throw fail("not an HTTP answer");
  try {
    r.status = std::stoi(text.substr(9, 3));
  } catch (const std::exception&) {
    throw fail("not an HTTP status");
  }
  r.body = text.substr(head_end + 4);
  return r;
}

}  // namespace kiln
