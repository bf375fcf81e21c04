#include "devices/virtio/vsock/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>

#include "base/error.h"
#include "base/unix_socket.h"

namespace kiln::virtio::vsock {

namespace {

bool unix_address(const std::string& path, sockaddr_un& addr) {
  auto a = kiln::unix_address(path);
  if (a) addr = *a;
  return a.has_value();
}

}  // namespace

UnixListener::UnixListener(std::string path) : path_(std::move(path)) {
  const std::string what = "vsock uds_path " + path_;
  sockaddr_un addr{};
  if (!unix_address(path_, addr)) throw UsageError(what + ": empty or too long for a Unix socket");
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) throw UsageError(what + " already exists and is not a socket");
    UniqueFd probe = connect_unix(path_);
    if (probe || errno == EAGAIN) throw UsageError(what + " is in use by another process");
    if (errno != ECONNREFUSED) throw UsageError(errno_message(what + " cannot be checked"));
    if (::unlink(path_.c_str()) < 0 && errno != ENOENT)
      throw UsageError(errno_message("cannot remove the stale socket " + path_));
  } else if (errno != ENOENT) {
    throw UsageError(errno_message(what));
  }
  fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd_) throw_errno("socket(AF_UNIX)");
  if (::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0)
    throw UsageError(errno_message(what + ": bind"));
  if (::lstat(path_.c_str(), &st) == 0) {
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }
  if (::listen(fd_.get(), SOMAXCONN) < 0) {
    const int err = errno;
    ::unlink(path_.c_str());
    throw_errno("listen(" + path_ + ")", err);
  }
}

UnixListener::~UnixListener() {
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
    ::unlink(path_.c_str());
}

UniqueFd UnixListener::accept() const {
  return UniqueFd(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
}

UniqueFd connect_unix(const std::string& path) {
  sockaddr_un addr{};
  if (!unix_address(path, addr)) {
    errno = ENAMETOOLONG;
    return UniqueFd();
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return fd;
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0) {
    const int err = errno;  // EAGAIN: the listener's backlog is full
    fd.reset();
    errno = err;
  }
  return fd;
}

}  // namespace kiln::virtio::vsock
