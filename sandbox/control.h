// A running sandbox's control socket (the `control` file in its registry directory), served by
// its `kiln sandbox run` process: `kiln sandbox kill` sends a signal for the workload through it.
// One request per connection, one JSON line each way: {"signal": N} (kill) or {"start": true}
// (kiln-oci start: a sandbox created with a start gate runs its workload) -> {"ok": true} or
// {"error": "..."}. The socket is the owner's only (mode 0600 in a 0700 directory).
#pragma once

#include <functional>
#include <string>

#include "base/unique_fd.h"

namespace kiln::sandbox {

// What a request does; each returns "" or why it failed.
struct ControlHandlers {
  std::function<std::string(int)> on_signal;
  std::function<std::string()> on_start;  // unset: start requests are refused
};

class ControlServer {
 public:
  explicit ControlServer(const std::string& path);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  int fd() const { return listener_.get(); }
  // Accepts a connection and answers its request. A client that sends nothing within a
  // second, or garbage, gets an error and is closed.
  void serve_one(const ControlHandlers& handlers);

 private:
  std::string path_;
  UniqueFd listener_;
};

// Asks the sandbox whose control socket is `path` to signal its workload. Throws kiln::Error
// with the sandbox's answer if it refused, or if it cannot be reached.
void request_signal(const std::string& path, int sig);
// Asks a sandbox waiting at its start gate to start its workload; the answer comes once the
// agent started it (or could not: kiln::Error with the agent's reason).
void request_start(const std::string& path);

}  // namespace kiln::sandbox
