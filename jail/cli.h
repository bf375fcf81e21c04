// `kiln jail`: Firecracker jailer's command line. Runs an executable (a static `kiln`) as an
// unprivileged user in an empty root of its own: a new mount namespace pivoted into
// <chroot-base-dir>/<exec name>/<id>/root with only the device nodes a VM needs, its cgroup and
// resource limits set, every inherited fd closed and the environment cleared.
#pragma once

#include "jail/jail_options.h"

namespace kiln::jail {

// argv[0] is "jail". Returns only on failure: 2 for bad flags (the message names the flag), 1
// for a step that failed (the message names the step and what to do).
int jail_main(int argc, char** argv);

// The flags of `kiln jail` (argv[0] is "jail"). Throws kiln::UsageError naming the flag;
// CLI::ParseError for help and unknown flags.
JailOptions parse_jail_args(int argc, char** argv);

}  // namespace kiln::jail
