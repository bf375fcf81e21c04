// Error helpers: Kiln reports failures as exceptions carrying a message that says what failed
// and, where possible, what to do. Callers at the top (main, the vCPU loop, the event loop)
// turn them into one log line and an exit status.
#pragma once

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace kiln {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Thrown for bad user input (flags, files, images): `kiln` exits with kExitUsage.
class UsageError : public Error {
 public:
  using Error::Error;
};

// "what: strerror(errno)", capturing errno at the call.
inline std::string errno_message(const std::string& what, int err = errno) {
  return what + ": " + std::strerror(err);
}

[[noreturn]] inline void throw_errno(const std::string& what, int err = errno) {
  throw Error(errno_message(what, err));
}

}  // namespace kiln
