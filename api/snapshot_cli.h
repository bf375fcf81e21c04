// `kiln snapshot create` and `kiln snapshot rebase`: the command line's snapshot tools, run
// outside any VM (create drives a running one through its API socket).
#pragma once

#include "api/cli.h"

namespace kiln::api {

// Pauses the VM behind the socket, snapshots it and, with `resume`, resumes it. Prints what
// failed (the API's fault_message) and returns the exit status: 0, kExitUsage when the VM
// refused the request, kExitVmError when it could not be reached.
int snapshot_create(const CliCommand::SnapshotCreate& c);

// Merges a Diff memory file onto its base; the exit status as above.
int snapshot_rebase(const std::string& base_file, const std::string& diff_file);

}  // namespace kiln::api
