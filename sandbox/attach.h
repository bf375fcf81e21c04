// A process in a sandbox attached to Kiln's own stdio, for `kiln sandbox run` and `exec`:
// stdout and stderr are Kiln's, stdin with -i, a terminal with -t (the host terminal in raw
// mode, its size, TERM, SIGWINCH), SIGINT/SIGTERM/SIGHUP to Kiln forwarded to the process.
#pragma once

#include <functional>

#include "agent/protocol/messages.h"
#include "base/unique_fd.h"
#include "sandbox/agent_client.h"

namespace kiln::sandbox {

struct AttachOptions {
  bool interactive = false;
  bool tty = false;
};

// Blocks SIGINT, SIGTERM, SIGHUP and SIGWINCH and returns a signalfd reading them (for
// AgentClient::forward_signals). Call before any thread starts.
UniqueFd forwarded_signals();

// Starts `s` as `o` says and pumps it until it exits; returns its status (the code, or 128 +
// the signal). A command the agent could not start is reported on stderr and is 127 (not
// found) or 126, as Docker reports them. `on_started` gets the process's id once it runs.
int attach(AgentClient& client, agent::Start s, const AttachOptions& o,
           const std::function<void(uint32_t)>& on_started = {});

}  // namespace kiln::sandbox
