// The host end of Kiln's vsock: Unix stream sockets at uds_path (listening) and uds_path_<port>.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/unique_fd.h"

namespace kiln::virtio::vsock {

// A listening, non-blocking socket bound at `path`, and its removal. An existing socket file
// nobody accepts on is replaced; anything else at `path` is refused (UsageError naming it).
class UnixListener {
 public:
  explicit UnixListener(std::string path);
  ~UnixListener();  // removes the socket file if it is still the one Kiln created
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  // A non-blocking accepted connection, or an invalid fd (errno set; EAGAIN: none waiting).
  UniqueFd accept() const;

 private:
  std::string path_;
  UniqueFd fd_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

// A non-blocking connection to the listener at `path`, or an invalid fd (errno set).
UniqueFd connect_unix(const std::string& path);

}  // namespace kiln::virtio::vsock
