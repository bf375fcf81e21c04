// A snapshot's guest memory file: the RAM regions' bytes one after another (Firecracker's
// layout), then one 4 KiB trailer page naming the snapshot (a magic and a random id the state
// file records too), restored by GuestMemory::map_private. Written atomically
// (atomic_file.h); the id pairs it with its state file, so a crash between writing the two
// (or a mix-up of files) leaves a pair that is refused, not one that restores a torn guest.
//
// A Full file holds every page; pages that are all zero are left as holes, so the file is
// sparse and a restore never reads them. A Diff file holds only the pages KVM's dirty log
// marks (every other page a hole) and is merged onto the previous snapshot's memory file with
// rebase_memory_file before it is restored, as with Firecracker's rebase-snap.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "base/guest_memory.h"
#include "base/unique_fd.h"

namespace kiln::snapshot {

// One bitmap per region (bit i: page i of 4 KiB), as VmFd::take_dirty_log returns them.
using DirtyBitmaps = std::vector<std::vector<uint64_t>>;

inline constexpr size_t kMemoryIdSize = 16;
using MemoryId = std::array<uint8_t, kMemoryIdSize>;
inline constexpr uint64_t kMemoryTrailerSize = 4096;

// A fresh random id.
MemoryId new_memory_id();

// Full when `dirty` is null. Throws kiln::Error naming `path` and the step.
void write_memory_file(const GuestMemory& mem, const std::string& path, const MemoryId& id,
                       const DirtyBitmaps* dirty = nullptr);

// Opens `path` read-only for map_private; kiln::Error unless it is a regular file of `size`
// bytes of guest memory and a trailer with `id` (a memory file of another snapshot, a
// truncated one, or one a later snapshot replaced).
UniqueFd open_memory_file(const std::string& path, uint64_t size, const MemoryId& id);

// Copies every data extent of `diff` (SEEK_DATA/SEEK_HOLE) over the same offsets of `base`,
// then fsyncs `base` (the trailer too: `base` then pairs with the diff's state file). The two
// must have the same size.
void rebase_memory_file(const std::string& base, const std::string& diff);

}  // namespace kiln::snapshot
