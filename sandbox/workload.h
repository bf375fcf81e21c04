// What `kiln sandbox run` boots and starts: the root's kind (a directory, an ext4 disk or a
// container image), the VM's root device and agent boot parameters, the volumes, and the
// workload's Start with the image's defaults under the flags.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/protocol/messages.h"
#include "sandbox/volume.h"

namespace kiln::sandbox {

// -u UID[:GID], numeric (GID defaults to UID).
std::pair<uint32_t, uint32_t> parse_numeric_user(const std::string& v);

struct WorkloadRequest {
  std::string root;
  std::vector<std::string> command, env;
  std::optional<std::string> workdir, user;
};

// A host directory shared with the guest over virtio-fs as `tag`.
struct Share {
  std::string tag, path;
  bool read_only = false;
};

struct Workload {
  agent::Start start;
  std::optional<Share> root_share;  // a directory or image root
  std::string root_disk;            // or an ext4 disk root (kiln run --disk)
  std::string cmdline;              // the agent's root parameters
  std::string user_root;            // where -u names resolve (none for a disk)
};

// A directory root as is, read-only if asked (kiln-oci: the bundle's root), with `start`.
Workload directory_workload(const std::string& root, bool read_only, agent::Start start);

// The image is unpacked (once, into the cache) here. kiln::Error or UsageError naming the
// flag when the request cannot run.
Workload plan_workload(const WorkloadRequest& r);

}  // namespace kiln::sandbox
