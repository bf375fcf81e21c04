// Unix stream sockets by path: the address (sun_path holds at most 107 bytes and a NUL) and a
// connection, shared by every client and server of a path (the API, the vsock device's host
// side, the sandbox's control socket, the agent's vsock, kiln-oci's console socket).
#pragma once

#include <sys/un.h>

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/unique_fd.h"

namespace kiln {

// The address of `path`, or nullopt if it is empty or too long for sun_path.
std::optional<sockaddr_un> unix_address(std::string_view path);
inline constexpr size_t kMaxUnixPath = sizeof(sockaddr_un::sun_path) - 1;

// A SOCK_STREAM | SOCK_CLOEXEC socket connected to `a`; an empty UniqueFd with errno set if
// that fails.
UniqueFd connect_unix(const sockaddr_un& a);

// Sends `bytes` in one message with `fd` attached (SCM_RIGHTS), as a console socket or a
// page-fault handler takes a descriptor. False with errno set unless all of it went.
bool send_with_fd(int socket, std::string_view bytes, int fd);
// The other side: one message into `buf`, its descriptor (if one came) into `fd`, close-on-exec.
// Returns the bytes read, or -1 with errno set.
ssize_t recv_with_fd(int socket, std::span<char> buf, UniqueFd& fd);

}  // namespace kiln
