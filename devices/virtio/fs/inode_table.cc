#include "devices/virtio/fs/inode_table.h"

#include <utility>

namespace kiln::virtio::fs {

void InodeTable::set_root(UniqueFd fd, const struct stat& st) {
  by_id_.clear();
  by_key_.clear();
  Inode& root = by_id_[kRootNodeId];
  root.fd = std::move(fd);
  root.dev = st.st_dev;
  root.ino = st.st_ino;
  root.type = st.st_mode & S_IFMT;
  root.lookups = 1;
  by_key_[{st.st_dev, st.st_ino}] = kRootNodeId;
  root_ = &root;
}

Inode* InodeTable::get(uint64_t nodeid) {
  const auto it = by_id_.find(nodeid);
  return it == by_id_.end() ? nullptr : &it->second;
}

uint64_t InodeTable::lookup(UniqueFd fd, const struct stat& st) {
  const Key key{st.st_dev, st.st_ino};
  if (const auto it = by_key_.find(key); it != by_key_.end()) {
    ++by_id_.at(it->second).lookups;
    return it->second;  // `fd` is closed: the table keeps its first fd for the inode
  }
  if (by_id_.size() >= max_) return 0;
  const uint64_t id = next_id_++;
  Inode& inode = by_id_[id];
  inode.fd = std::move(fd);
  inode.dev = st.st_dev;
  inode.ino = st.st_ino;
  inode.type = st.st_mode & S_IFMT;
  inode.lookups = 1;
  by_key_[key] = id;
  return id;
}

bool InodeTable::forget(uint64_t nodeid, uint64_t n) {
  const auto it = by_id_.find(nodeid);
  if (it == by_id_.end()) return false;
  if (nodeid == kRootNodeId) return true;
  Inode& inode = it->second;
  if (n < inode.lookups) {
    inode.lookups -= n;
    return true;
  }
  by_key_.erase({inode.dev, inode.ino});
  by_id_.erase(it);
  return true;
}

bool InodeTable::insert(uint64_t nodeid, Inode inode, uint64_t next_id) {
  const Key key{inode.dev, inode.ino};
  if (nodeid <= kRootNodeId || nodeid >= next_id || by_id_.count(nodeid) || by_key_.count(key) ||
      by_id_.size() >= max_ || inode.lookups == 0)
    return false;
  by_id_[nodeid] = std::move(inode);
  by_key_[key] = nodeid;
  return true;
}

void InodeTable::clear() {
  for (auto it = by_id_.begin(); it != by_id_.end();) {
    if (it->first == kRootNodeId) {
      it->second.lookups = 1;
      ++it;
      continue;
    }
    by_key_.erase({it->second.dev, it->second.ino});
    it = by_id_.erase(it);
  }
}

}  // namespace kiln::virtio::fs
