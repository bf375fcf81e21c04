// Applies image layers (tar changesets, uncompressed or gzip/zstd/xz/bzip2, as libarchive
// detects) in order onto a root directory, as the OCI image spec's "Applying Changesets" says:
// `.wh.NAME` deletes NAME of the lower layers, `.wh..wh..opq` hides everything the lower layers
// put in its directory, an entry replaces what was at its path. Nothing is written outside the
// root: an entry with an absolute path or "..", or whose path leads through a symlink, is an
// error naming the layer and the entry; symlinks are created as they are, never followed.
// Ownership is kept when running as root (else files belong to the running user), modes and
// mtimes are kept, device nodes are skipped (and counted) when not root.
#pragma once

#include <cstdint>
#include <string>

#include "image/digest.h"

namespace kiln::image {

struct UnpackLimits {
  uint64_t max_bytes = 16ull << 30;  // regular file content of the whole image
  uint64_t max_entries = 1u << 20;   // entries of all layers, whiteouts included
};

struct UnpackStats {
  uint64_t bytes = 0;
  uint64_t entries = 0;
  uint64_t skipped_devices = 0;  // device nodes not created (not running as root)
};

class LayerUnpacker {
 public:
  // `root` must exist (an empty directory before the first layer).
  LayerUnpacker(const std::string& root, UnpackLimits limits);

  // Applies the layer tar at `path`; `what` names it in errors ("layer 1 (sha256:...)").
  // Errors are UsageErrors; the root is then in an undefined state (the caller discards it).
  void apply(const std::string& path, const std::string& what);

  const UnpackStats& stats() const { return stats_; }

 private:
  std::string root_;
  UnpackLimits limits_;
  UnpackStats stats_;
  bool as_root_;
};

// The sha256 of a layer's uncompressed tar stream (its diff_id, as docker-archive configs list).
Digest layer_diff_id(const std::string& path, const std::string& what);

}  // namespace kiln::image
