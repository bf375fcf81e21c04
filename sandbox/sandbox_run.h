// `kiln sandbox run`: one workload in a fresh microVM, booted from the agent's initramfs with an
// ext4 image as its root. Kiln's exit status is the workload's.
#pragma once

namespace kiln::sandbox {

// argv[0] is "sandbox". Returns the exit status: the workload's (its code, or 128 + signal),
// 125 when Kiln itself failed (bad flags, the VM did not boot or the agent misbehaved), 126 or
// 127 when the command could not be started (127: not found), as Docker reports them.
int sandbox_main(int argc, char** argv);

}  // namespace kiln::sandbox
