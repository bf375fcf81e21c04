// Host-side Unix-socket helpers for vsock tests and benchmarks: a temporary directory for the
// sockets, a listener, a client, and blocking exact reads/writes with a time limit.
// Header-only (tests/ and bench/ both use it).
#pragma once

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "base/unique_fd.h"
#include "tests/support/test_files.h"

namespace kiln::testsupport {

// A directory in $TMPDIR (or /tmp), removed with its contents on destruction.
using TempDir = test::TempDir;

inline sockaddr_un unix_addr(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) throw std::runtime_error("path too long: " + path);
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// A blocking listening socket at `path`.
inline UniqueFd unix_listen(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_un addr = unix_addr(path);
  if (!fd || ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0 ||
      ::listen(fd.get(), 16) < 0)
    throw std::runtime_error("listen on " + path + ": " + std::strerror(errno));
  return fd;
}

// A blocking client connection to `path`; invalid on failure.
inline UniqueFd unix_connect(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_un addr = unix_addr(path);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0)
    return UniqueFd();
  return fd;
}

// Waits up to `ms` for `events` on `fd`; true if they arrived.
inline bool wait_fd(int fd, short events, int ms) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, ms) > 0;
}

// accept() with a time limit; invalid fd on timeout.
inline UniqueFd accept_within(int listen_fd, int ms) {
  if (!wait_fd(listen_fd, POLLIN, ms)) return UniqueFd();
  return UniqueFd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
}

// Reads exactly `len` bytes (or until EOF / error / `ms` without progress); returns them.
inline std::string read_upto(int fd, size_t len, int ms = 5000) {
  std::string out;
  char buf[65536];
  while (out.size() < len) {
    if (!wait_fd(fd, POLLIN, ms)) break;
    const ssize_t n = ::recv(fd, buf, std::min(sizeof(buf), len - out.size()), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Reads one line including its '\n' (byte by byte), or what came before EOF / the time limit.
inline std::string read_line(int fd, int ms = 5000) {
  std::string out;
  char c;
  while (wait_fd(fd, POLLIN, ms) && ::recv(fd, &c, 1, 0) == 1) {
    out += c;
    if (c == '\n') break;
  }
  return out;
}

// True when the peer has closed: EOF with no data pending within `ms`.
inline bool peer_closed(int fd, int ms = 5000) {
  if (!wait_fd(fd, POLLIN, ms)) return false;
  char c;
  return ::recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

inline bool write_all(int fd, const void* data, size_t len) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (len > 0) {
    const ssize_t n = ::send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}
inline bool write_all(int fd, const std::string& s) {
  return write_all(fd, s.data(), s.size());
}

}  // namespace kiln::testsupport
