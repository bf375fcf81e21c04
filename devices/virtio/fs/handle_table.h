// The FUSE server's open files and directories (OPEN, CREATE, OPENDIR): host fds by handle
// id, counting up from 1 and never reused. Bounded: a full table refuses new handles (the
// caller answers EMFILE).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <utility>

#include "base/unique_fd.h"

namespace kiln::virtio::fs {

struct Handle {
  UniqueFd fd;
  bool dir = false;
  bool writable = false;
};

class HandleTable {
 public:
  explicit HandleTable(size_t max_handles) : max_(max_handles < 1 ? 1 : max_handles) {}

  bool full() const { return by_id_.size() >= max_; }
  // Returns the new handle id, or 0 when the table is full (`fd` is then closed).
  uint64_t add(UniqueFd fd, bool dir, bool writable) {
    if (full()) return 0;
    const uint64_t id = next_id_++;
    by_id_[id] = Handle{std::move(fd), dir, writable};
    return id;
  }
  Handle* get(uint64_t fh) {
    const auto it = by_id_.find(fh);
    return it == by_id_.end() ? nullptr : &it->second;
  }
  bool remove(uint64_t fh) { return by_id_.erase(fh) > 0; }
  void clear() { by_id_.clear(); }
  size_t size() const { return by_id_.size(); }

  // Snapshots: every handle with its id, and the next id.
  template <typename F>
  void for_each(F f) const {
    for (const auto& [id, handle] : by_id_) f(id, handle);
  }
  uint64_t next_id() const { return next_id_; }
  // A restored handle: false if the id is taken, 0 or not below `next_id`, or the table is full.
  bool insert(uint64_t fh, Handle handle, uint64_t next_id) {
    if (fh == 0 || fh >= next_id || by_id_.count(fh) || full()) return false;
    by_id_[fh] = std::move(handle);
    return true;
  }
  void set_next_id(uint64_t id) { next_id_ = id; }

 private:
  size_t max_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, Handle> by_id_;
};

}  // namespace kiln::virtio::fs
