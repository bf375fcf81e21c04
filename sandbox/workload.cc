#include "sandbox/workload.h"

#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "image/image_cache.h"
#include "image/image_source.h"
#include "image/run_spec.h"
#include "image/user_db.h"

namespace kiln::sandbox {

namespace fs = std::filesystem;

namespace {

enum class RootKind { kDirectory, kDisk, kImage };

// An ext4 file system has its superblock magic 0xEF53 at byte 1080.
bool is_ext4(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char m[2] = {};
  return f.seekg(1080) && f.read(m, 2) && m[0] == '\x53' && m[1] == '\xef';
}

// A directory with an OCI layout's "oci-layout" or a docker-save tree's "manifest.json" is an
// image; another directory is a root to share; an ext4 file is a disk; anything else (a tar,
// or PATH:TAG) is tried as an image archive.
RootKind root_kind(const std::string& root) {
  if (fs::is_directory(root))
    return fs::exists(fs::path(root) / "oci-layout") || fs::exists(fs::path(root) / "manifest.json")
               ? RootKind::kImage
               : RootKind::kDirectory;
  if (fs::is_regular_file(root) && is_ext4(root)) return RootKind::kDisk;
  return RootKind::kImage;
}

}  // namespace

std::pair<uint32_t, uint32_t> parse_numeric_user(const std::string& v) {
  auto number = [&v](const std::string& s) {
    if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos)
      throw kiln::Error("-u " + v +
                        ": want numeric UID[:GID] (names are resolved in container images and "
                        "directory roots, not in disks)");
    unsigned long n = std::stoul(s);
    if (n >= 0xffffffffUL) throw kiln::Error("-u " + v + ": id out of range");
    return static_cast<uint32_t>(n);
  };
  auto colon = v.find(':');
  uint32_t uid = number(v.substr(0, colon));
  return {uid, colon == std::string::npos ? uid : number(v.substr(colon + 1))};
}

Workload directory_workload(const std::string& root, bool read_only, agent::Start start) {
  if (root.find(',') != std::string::npos)
    throw kiln::Error("root " + root + ": a directory root must not contain ','");
  Workload w;
  w.root_share = Share{"kiln-root", root, read_only};
  w.cmdline = " kiln.root=kiln-root kiln.rootfstype=virtiofs";
  if (read_only) w.cmdline += " kiln.rootflags=ro";
  w.user_root = fs::absolute(root).string();
  w.start = std::move(start);
  return w;
}

// The command line as given for a directory or a disk; an image's defaults (Entrypoint, Cmd,
// Env, WorkingDir, User) under the flags for an image, whose cached root is shared read-only
// under a tmpfs overlay (runs never change it). A missing working directory is created, as
// Docker does.
Workload plan_workload(const WorkloadRequest& r) {
  Workload w;
  agent::Start& s = w.start;
  s.create_cwd = true;
  RootKind kind = root_kind(r.root);
  switch (kind) {
    case RootKind::kDirectory:
    case RootKind::kDisk: {
      if (r.command.empty()) throw kiln::Error("CMD is required unless ROOT is a container image");
      // kiln run's --fs/--disk values are comma-separated key=value lists.
      if (r.root.find(',') != std::string::npos)
        throw kiln::Error("ROOT " + r.root + ": a directory or disk root must not contain ','");
      bool dir = kind == RootKind::kDirectory;
      if (dir)
        w.root_share = Share{"kiln-root", r.root, false};
      else
        w.root_disk = r.root;
      w.cmdline = dir ? " kiln.root=kiln-root kiln.rootfstype=virtiofs"
                      : " kiln.root=/dev/vda kiln.rootfstype=ext4";
      if (dir) w.user_root = fs::absolute(r.root).string();
      s.argv = r.command;
      s.env = {image::kDefaultPath, "HOME=/root"};
      for (const auto& e : r.env) s.env.push_back(e);
      s.cwd = r.workdir.value_or("/");
      if (r.user && dir) {
        image::ResolvedUser u = image::resolve_user(w.user_root, *r.user, "-u");
        s.uid = u.uid;
        s.gid = u.gid;
        s.groups = u.groups;
      } else if (r.user) {
        std::tie(s.uid, s.gid) = parse_numeric_user(*r.user);
      }
      break;
    }
    case RootKind::kImage: {
      image::UnpackedImage img = image::open_image(r.root);
      image::RunOverrides ov;
      ov.command = r.command;
      ov.env = r.env;
      ov.working_dir = r.workdir;
      ov.user = r.user;
      image::RunSpec spec = image::make_run_spec(img.config, ov, img.rootfs);
      if (img.rootfs.find(',') != std::string::npos)
        throw kiln::Error("the image cache " + img.rootfs + " contains ','; set KILN_CACHE");
      w.root_share = Share{"kiln-root", img.rootfs, true};
      w.cmdline = " kiln.root=kiln-root kiln.rootfstype=virtiofs kiln.overlay=tmpfs";
      w.user_root = img.rootfs;
      s.argv = spec.argv;
      s.env = spec.env;
      s.cwd = spec.cwd;
      s.uid = spec.user.uid;
      s.gid = spec.user.gid;
      s.groups = spec.user.groups;
      break;
    }
  }
  return w;
}

}  // namespace kiln::sandbox
