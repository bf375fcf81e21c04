// The FUSE server's inodes: each a host O_PATH|O_NOFOLLOW fd, keyed by (st_dev, st_ino), with
// the guest's lookup count. Node ids count up from 2 and are never reused while the server
// lives (generation 0 suffices); nodeid 1 is the shared directory and is never freed. The table
// is bounded: a full table refuses new inodes (the caller answers ENFILE).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <unordered_map>

#include "base/unique_fd.h"

namespace kiln::virtio::fs {

inline constexpr uint64_t kRootNodeId = 1;

struct Inode {
  UniqueFd fd;  // O_PATH | O_NOFOLLOW: never follows, never does I/O itself
  dev_t dev = 0;
  ino_t ino = 0;
  mode_t type = 0;  // st_mode & S_IFMT: an inode's type never changes
  uint64_t lookups = 0;
};

class InodeTable {
 public:
  explicit InodeTable(size_t max_inodes) : max_(max_inodes < 1 ? 1 : max_inodes) {}

  // Installs the shared directory as nodeid 1.
  void set_root(UniqueFd fd, const struct stat& st);
  Inode* get(uint64_t nodeid);
  const Inode& root() const { return *root_; }

  // The inode `st` describes, with one more lookup: the one already held (the new fd is
  // closed) or a new entry taking `fd`. Returns its nodeid, or 0 when the table is full.
  uint64_t lookup(UniqueFd fd, const struct stat& st);
  // Drops n lookups; an inode reaching 0 is freed. Unknown ids and the root are ignored.
  // Returns false for an unknown id.
  bool forget(uint64_t nodeid, uint64_t n);
  // Every inode but the root goes (device reset, DESTROY); the root's count restarts.
  void clear();

  size_t size() const { return by_id_.size(); }
  size_t max() const { return max_; }

  // Snapshots: every inode with its nodeid (the root included), and the next id.
  template <typename F>
  void for_each(F f) const {
    for (const auto& [id, inode] : by_id_) f(id, inode);
  }
  uint64_t next_id() const { return next_id_; }
  // A restored inode (not the root): false if the id or its (dev, ino) is taken, the id is not
  // below `next_id`, or the table is full.
  bool insert(uint64_t nodeid, Inode inode, uint64_t next_id);
  void set_next_id(uint64_t id) { next_id_ = id; }

 private:
  struct Key {
    dev_t dev;
    ino_t ino;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<uint64_t>()(static_cast<uint64_t>(k.ino) * 0x9e3779b97f4a7c15ull ^
                                   static_cast<uint64_t>(k.dev));
    }
  };

  size_t max_;
  uint64_t next_id_ = kRootNodeId + 1;
  std::unordered_map<uint64_t, Inode> by_id_;
  std::unordered_map<Key, uint64_t, KeyHash> by_key_;
  Inode* root_ = nullptr;
};

}  // namespace kiln::virtio::fs
