#include "oci/mount_points.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <vector>

#include "agent/boot_config.h"
#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::oci {

UniqueFd open_in_root(int root, const std::string& path) {
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  return UniqueFd(static_cast<int>(syscall(SYS_openat2, root, path.c_str(), &how, sizeof how)));
}

namespace {

bool under(const std::string& path, const std::string& dir) {
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

// `target` (absolute, no "." or "..") with its parents as directories, and itself as a
// directory or an empty file.
void make_point(int root, const std::string& target, bool directory) {
  std::vector<std::string> parts;
  std::istringstream in(target);
  for (std::string p; std::getline(in, p, '/');)
    if (!p.empty()) parts.push_back(p);
  std::string path = ".";
  for (size_t i = 0; i < parts.size(); ++i) {
    bool last = i + 1 == parts.size();
    std::string parent = path;
    path += "/" + parts[i];
    if (UniqueFd fd = open_in_root(root, path)) {
      struct stat st;
      if (fstat(fd.get(), &st) < 0) throw Error("stat " + path + ": " + std::strerror(errno));
      if (!last && !S_ISDIR(st.st_mode))
        throw Error(path.substr(1) + " is not a directory in the container's root");
      continue;
    }
    if (errno != ENOENT) throw Error("open " + path.substr(1) + ": " + std::strerror(errno));
    UniqueFd dir = open_in_root(root, parent);
    if (!dir) throw Error("open " + parent.substr(1) + "/: " + std::strerror(errno));
    int rc;
    if (!last || directory) {
      rc = mkdirat(dir.get(), parts[i].c_str(), 0755);
    } else {
      rc = openat(dir.get(), parts[i].c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0644);
      if (rc >= 0) close(rc);
    }
    if (rc < 0 && errno != EEXIST)
      throw Error("make " + path.substr(1) + ": " + std::strerror(errno) +
                  (errno == EROFS ? " (the root is read-only: add it to the image)" : ""));
  }
}

}  // namespace

void make_mount_points(const std::string& rootfs, const sandbox::RunOptions& run) {
  UniqueFd root(open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root)
    throw UsageError("config.json: root.path: open " + rootfs + ": " + std::strerror(errno));
  std::vector<std::string> guest_made = {"/dev", "/proc", "/sys", "/run", "/tmp"};
  std::vector<std::pair<std::string, bool>> points;  // target, is a directory
  for (const auto& d : guest_made) points.emplace_back(d, true);
  for (const auto& t : run.tmpfs) {
    std::string target = agent::parse_tmpfs(t).target;
    points.emplace_back(target, true);
    guest_made.push_back(target);
  }
  for (const auto& v : run.volumes) points.emplace_back(v.guest, true);
  for (const auto& f : run.files) points.emplace_back(f.guest, false);
  for (const auto& [target, directory] : points) {
    bool inside = false;
    for (const auto& d : guest_made) inside = inside || under(target, d);
    if (inside) continue;
    try {
      make_point(root.get(), target, directory);
    } catch (const Error& e) {
      throw UsageError("config.json: mounts: the mount point " + target + ": " + e.what());
    }
  }
}

}  // namespace kiln::oci
