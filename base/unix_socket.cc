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

}  // namespace kiln
