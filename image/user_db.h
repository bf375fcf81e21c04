// Resolves a container user ("uid", "name", "uid:gid", "name:group", "") against the image's
// /etc/passwd and /etc/group as runc and Docker do. The files are opened inside the root
// (openat2 RESOLVE_IN_ROOT): a symlink in the image cannot make Kiln read a host file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiln::image {

struct ResolvedUser {
  uint32_t uid = 0, gid = 0;
  std::vector<uint32_t> groups;  // supplementary groups: those of /etc/group listing the user
  std::string name;              // empty for a uid without a passwd entry
  std::string home = "/";
};

// `spec` empty means root. A name that is not in the image's files, or a malformed spec, is a
// UsageError naming `what` (e.g. "-u" or "image config User").
ResolvedUser resolve_user(const std::string& rootfs, const std::string& spec,
                          const std::string& what);

// Reads `path` (absolute inside the image, e.g. "/etc/passwd") from the root at `rootfs`,
// resolving symlinks as if `rootfs` were "/"; returns false if it does not exist.
bool read_in_root(const std::string& rootfs, const std::string& path, std::string& out);

}  // namespace kiln::image
