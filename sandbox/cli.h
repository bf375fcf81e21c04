// `kiln sandbox`: workloads in microVMs booted with kiln-agent (run, exec, ls, kill, rm).
#pragma once

namespace kiln::sandbox {

// argv[0] is "sandbox". run and exec return the workload's status (its code, or 128 + signal),
// 125 when Kiln itself failed (bad flags, the VM did not boot or the agent misbehaved), 126 or
// 127 when the command could not be started (127: not found), as Docker reports them. ls, kill
// and rm return 0, 2 for bad input (an unknown name, a bad signal), 1 when they failed.
int sandbox_main(int argc, char** argv);

}  // namespace kiln::sandbox
