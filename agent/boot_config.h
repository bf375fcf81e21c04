// What the agent takes from the kernel command line (/proc/cmdline):
//   kiln.root=SOURCE         the workload's root: a block device (/dev/vda) or, with
//                            kiln.rootfstype=virtiofs, a virtio-fs tag
//   kiln.rootfstype=TYPE     ext4 (default), virtiofs, ... (any file system the kernel has)
//   kiln.rootflags=OPTS      mount data, e.g. "ro" or "discard" (default: none)
//   kiln.hostname=NAME       default "kiln"
//   kiln.port=N              the vsock port to listen on (default 1024)
//   kiln.overlay=tmpfs       the root (mounted read-only) under an overlay whose writes go to
//                            a tmpfs: the workload may write, the shared root is not changed
//   kiln.volume=TAG:DIR[:ro] mount virtio-fs share TAG at DIR (absolute) in the workload's
//                            root, read-only with ":ro"; repeatable, mounted in order
//   kiln.bind=TAG:NAME:FILE[:ro]
//                            file NAME of share TAG (mounted under /run/kiln/shares/TAG,
//                            read-only unless a bind of it is not, and unmounted once bound)
//                            bind-mounted on FILE (absolute; made empty, with its parents, if
//                            missing); repeatable
//   kiln.tmpfs=/DIR[:OPTS]   a tmpfs at DIR (absolute, made with its parents) in the workload's
//                            root; OPTS a comma list of mount flags (ro, nosuid, nodev, noexec,
//                            noatime, ...), tmpfs data (size=, nr_inodes=, mode=, uid=, gid=)
//                            and tmpcopyup (the directory's files copied in); repeatable
//   Volumes, tmpfs and binds are mounted parents first (by the depth of their target).
//   kiln.net=ADDR/PREFIX[,gw=GW][,mtu=N][,mac=MAC,name=NAME]
//                            an interface's IPv4 address, default route and MTU (68 to
//                            65535): eth0's, or with mac= and name= the one with that MAC,
//                            renamed NAME (kiln-oci: the engine's names); repeatable (8)
//   kiln.warm=1              boot without a workload (for a pooled snapshot): the agent listens
//                            at once and takes every parameter below but kiln.port from the
//                            host's `configure` message (agent/protocol/messages.h)
//   kiln.setmac=OLD,NEW      the interface with MAC OLD takes MAC NEW (a warm snapshot's NICs
//                            have the pool's MACs; each sandbox's its own), before any
//                            kiln.net; repeatable (8)
//   kiln.dns=ADDR[,ADDR]...  name servers (at most 3) for /etc/resolv.conf (bind-mounted from
//                            /run/kiln, the workload's root is not written)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kiln::agent {

struct Volume {
  std::string tag, target;
  bool read_only = false;
};

// A file of a virtio-fs share bind-mounted on a file of the root (kiln-oci: the engine's
// /etc/hosts, /etc/resolv.conf, ...).
struct FileBind {
  std::string tag, name, target;
  bool read_only = false;
};

// A tmpfs in the workload's root (kiln-oci: the spec's tmpfs mounts, podman --tmpfs and
// --read-only).
struct Tmpfs {
  std::string target;
  unsigned long flags = 0;  // MS_* flags
  std::string data;         // tmpfs options: size=, nr_inodes=, mode=, uid=, gid=
  bool copy_up = false;     // tmpcopyup: the directory's former contents copied in
};

// "/DIR[:OPTS]" (kiln.tmpfs's value); throws std::runtime_error naming what is wrong. The host
// side (kiln-oci) checks a spec's tmpfs mounts with it before booting.
Tmpfs parse_tmpfs(const std::string& value);

struct Network {
  std::string address;  // dotted IPv4
  int prefix = 24;
  std::string gateway;  // empty: no default route
  uint32_t mtu = 0;     // 0: the device's
  std::string mac;      // lower-case aa:bb:..; empty: the interface is eth0
  std::string name;     // what the interface with `mac` is renamed to
};

struct MacChange {
  std::string from, to;  // lower-case aa:bb:..
};

struct BootConfig {
  bool warm = false;  // kiln.warm=1
  std::string root;
  std::string rootfstype = "ext4";
  std::string rootflags;
  bool read_only = false;  // "ro" in rootflags
  bool overlay = false;    // kiln.overlay=tmpfs
  std::string hostname = "kiln";
  uint32_t port = 1024;
  std::vector<Volume> volumes;
  std::vector<FileBind> binds;
  std::vector<Tmpfs> tmpfs;
  std::vector<Network> nets;
  std::vector<MacChange> mac_changes;
  std::vector<std::string> dns;
};

// Where parameters come from: the kernel command line, or a warm agent's configure (which
// refuses kiln.warm and kiln.port).
enum class Source { kCmdline, kConfigure };

// Parses a kernel command line; throws std::runtime_error naming a bad parameter.
BootConfig parse_boot_config(const std::string& cmdline, Source source = Source::kCmdline);

}  // namespace kiln::agent
