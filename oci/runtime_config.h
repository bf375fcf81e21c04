// kiln-oci's runtime configuration: the defaults of every container it creates, from a TOML
// file (/etc/kiln/oci.toml, or the file $KILN_OCI_CONFIG names), flat keys only:
//   kernel = "/path/vmlinux"       the guest kernel (default: guest-kernel/vmlinux beside kiln)
//   initrd = "/path/agent.cpio"    the agent's initramfs (default: agent/kiln-agent.cpio beside)
//   vcpus = 1                      vCPUs, 1 to 254
//   memory_mib = 256               guest memory in MiB, 32 to 65536
//   timings_annotation = false     whether a container's io.kiln.timings=FILE annotation is
//                                  honoured: it makes this runtime (often root) append to FILE,
//                                  so it is for benchmarks on machines the admin trusts
//   warm = false                   containers start from a pooled snapshot of a booted guest
//                                  (sandbox/warm.h: `kiln sandbox run --warm`), made on first
//                                  use per kernel and shape
// A container's annotations (io.kiln.vcpus, io.kiln.memory_mib) and its linux.resources
// override vcpus and memory_mib (oci/spec.h).
#pragma once

#include <string>

#include "sandbox/commands.h"

namespace kiln::oci {

inline constexpr const char* kDefaultRuntimeConfig = "/etc/kiln/oci.toml";

// What the file says beyond the defaults.
struct RuntimeConfig {
  bool timings_annotation = false;
  bool warm = false;
};

// Applies the file at `path` to `defaults` and returns the rest. A missing file changes nothing
// unless `required` (the file $KILN_OCI_CONFIG names must exist). kiln::UsageError naming the file,
// the line where toml11 knows it, and the key, for any other problem: bad TOML, an unknown key, a
// value of the wrong type or out of range.
RuntimeConfig apply_runtime_config(sandbox::RunOptions& defaults, const std::string& path,
                                   bool required);

}  // namespace kiln::oci
