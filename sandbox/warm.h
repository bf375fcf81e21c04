// Warm sandboxes: a pooled snapshot of a booted guest whose agent waits for its workload
// (kiln.warm=1), one per kernel, initramfs, machine shape and Kiln build, made on first use and
// kept under ${KILN_CACHE:-~/.cache/kiln}/warm/<key>/ (state, memory, shape.txt; without HOME
// or KILN_CACHE, a containerd shim's runtime, /var/cache/kiln/warm). A sandbox
// restores it in a new `kiln` (its own vsock socket, its shares on its own directories), and
// the agent mounts the workload's root when the host's configure arrives: the start costs a
// restore, not a boot.
#pragma once

#include <string>
#include <vector>

#include "agent/protocol/messages.h"
#include "base/unique_fd.h"
#include "sandbox/workload.h"

namespace kiln::sandbox {

struct WarmShape {
  std::string kernel, initrd;
  unsigned cpus = 1, memory = 256;
  // The virtio-fs devices in order: tags and read-only flags are the snapshot's; paths are
  // each sandbox's own.
  std::vector<Share> shares;
  // virtio-net devices: in the snapshot on transient TAPs with the pool's MACs
  // (warm_pool_mac), restored on each sandbox's TAPs; the agent gives each its own MAC.
  size_t nets = 0;
};

// The MAC of the snapshot's network interface `index` (the agent's kiln.setmac changes it).
std::string warm_pool_mac(size_t index);

struct WarmSnapshot {
  std::string state, memory;
  UniqueFd lock;  // held shared while the sandbox runs: the cache's pruning leaves the entry
};

// The pool's snapshot for `shape`, made now if the cache has none: `kiln run` with the agent
// booted warm, paused once the agent answered, snapshotted (Full), stopped. Concurrent first
// uses make one (a lock beside the entry); an entry is complete or absent. The cache keeps
// the 8 used last (beyond those any sandbox holds). kiln::Error with the boot's console when it
// cannot be made.
WarmSnapshot warm_snapshot(const WarmShape& shape, unsigned boot_timeout_s);

// Leaves at most `max_entries` snapshots in the cache directory `root` besides `keep`: those
// used longest ago (their state file's time) go, unless a sandbox holds them (their lock). The
// lock files stay (another process may have one open).
void prune_warm_cache(const std::string& root, const std::string& keep, size_t max_entries);

// `kiln --restore` of `snap` for one sandbox: its vsock socket, its shares' directories and
// TAPs (in the shape's order), its API socket if any.
std::vector<std::string> warm_restore_args(const WarmSnapshot& snap, const std::string& uds,
                                           const std::vector<Share>& shares,
                                           const std::vector<std::string>& taps,
                                           const std::string& api_sock);

// The configure for a restored agent: `params` (kiln.* parameters), the host's clock, fresh
// entropy.
agent::Configure warm_configure(const std::string& params);

}  // namespace kiln::sandbox
