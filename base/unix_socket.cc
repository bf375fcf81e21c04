#include "base/unix_socket.h"

#include <errno.h>
#include <sys/socket.h>

#include <cstring>

namespace kiln {

std::optional<sockaddr_un> unix_address(std::string_view path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() > kMaxUnixPath || path.find('\0') != std::string_view::npos)
    return std::nullopt;
  std::memcpy(a.sun_path, path.data(), path.size());
  return a;
}

UniqueFd connect_unix(const sockaddr_un& a) {
  UniqueFd s(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return s;
  if (connect(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) < 0) {
    int saved = errno;
    s.reset();
    errno = saved;
  }
  return s;
}

namespace {
// One message over `iov` with room for one descriptor.
struct FdMessage {
  explicit FdMessage(iovec data) : iov(data) {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
  }
  iovec iov;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
};
}  // namespace

ssize_t recv_with_fd(int socket, std::span<char> buf, UniqueFd& fd) {
  FdMessage m(iovec{buf.data(), buf.size()});
  ssize_t n;
  do {
    n = recvmsg(socket, &m.msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m.msg); c; c = CMSG_NXTHDR(&m.msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
        c->cmsg_len != CMSG_LEN(sizeof(int)))
      continue;
    int got;
    std::memcpy(&got, CMSG_DATA(c), sizeof got);
    fd.reset(got);
  }
  return n;
}

bool send_with_fd(int socket, std::string_view bytes, int fd) {
  FdMessage m(iovec{const_cast<char*>(bytes.data()), bytes.size()});
  msghdr& msg = m.msg;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ssize_t n;
  do {
    n = sendmsg(socket, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n >= 0 && static_cast<size_t>(n) != bytes.size()) errno = EMSGSIZE;
  return n >= 0 && static_cast<size_t>(n) == bytes.size();
}

}  // namespace kiln
