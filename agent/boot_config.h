// What the agent takes from the kernel command line (/proc/cmdline):
//   kiln.root=SOURCE         the workload's root: a block device (/dev/vda) or, with
//                            kiln.rootfstype=virtiofs, a virtio-fs tag
//   kiln.rootfstype=TYPE     ext4 (default), virtiofs, ... (any file system the kernel has)
//   kiln.rootflags=OPTS      mount data, e.g. "ro" or "discard" (default: none)
//   kiln.hostname=NAME       default "kiln"
//   kiln.port=N              the vsock port to listen on (default 1024)
#pragma once

#include <cstdint>
#include <string>

namespace kiln::agent {

struct BootConfig {
  std::string root;
  std::string rootfstype = "ext4";
  std::string rootflags;
  bool read_only = false;  // "ro" in rootflags
  std::string hostname = "kiln";
  uint32_t port = 1024;
};

// Parses a kernel command line; throws std::runtime_error naming a bad parameter.
BootConfig parse_boot_config(const std::string& cmdline);

}  // namespace kiln::agent
