// The VM's cgroup for `kiln jail`: <hierarchy>/<parent>/<id>, made where each controller named
// by a --cgroup file is mounted (cgroup v1: one hierarchy per controller, found in
// /proc/self/mounts) or in the unified hierarchy (v2: the controllers enabled in every
// ancestor's cgroup.subtree_control), the values written and the calling process moved in.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace kiln::jail {

struct CgroupRequest {
  int version = 1;
  std::string parent;  // relative to the hierarchy's root
  std::string id;
  std::vector<std::pair<std::string, std::string>> values;  // FILE=VALUE, in order
};

// Throws kiln::UsageError (no hierarchy has a controller, a file the controller does not have)
// or kiln::Error (a write failed).
void enter_cgroup(const CgroupRequest& request);

}  // namespace kiln::jail
