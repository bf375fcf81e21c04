#include "sandbox/warm.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/snapshot/state_file.h"
#include "base/unique_fd.h"
#include "base/vmm_api.h"
#include "image/digest.h"
#include "image/image_cache.h"
#include "sandbox/agent_client.h"
#include "sandbox/vm_process.h"

namespace kiln::sandbox {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr size_t kMaxEntries = 8;  // warm snapshots kept in the cache

// What a file is for the cache key: its real path, size and modification time (a rebuilt
// kernel, initramfs or kiln makes a new entry).
std::string identity(const std::string& path, const char* what) {
  struct stat st;
  if (stat(path.c_str(), &st) < 0) throw_errno(std::string("the ") + what + " " + path);
  std::error_code ec;
  fs::path real = fs::canonical(path, ec);
  return (ec ? path : real.string()) + " " + std::to_string(st.st_size) + " " +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

// The shape as text: shape.txt, and hashed, the entry's name. The host's CPU is part of it (a
// restore refuses another kind of CPU; a cache in a shared home may be used from several).
std::string describe(const WarmShape& s) {
  std::ostringstream t;
  t << "kiln " << KILN_VERSION << " " << identity("/proc/self/exe", "Kiln executable") << "\n"
    << "kernel " << identity(s.kernel, "kernel") << "\n"
    << "initrd " << identity(s.initrd, "initramfs") << "\n"
    << "host " << snapshot::HostIdentity::current().describe() << "\n"  // a shared cache
    << "vcpus " << s.cpus << "\nmemory_mib " << s.memory << "\n";
  for (const Share& sh : s.shares) t << "share " << sh.tag << (sh.read_only ? " ro" : "") << "\n";
  t << "nets " << s.nets << "\n";
  return t.str();
}

// The snapshot's id of the share at `index`.
std::string share_id(size_t index) {
  return "share" + std::to_string(index);
}
std::string net_id(size_t index) {
  return "net" + std::to_string(index);
}

// Kiln's cache; /var/cache/kiln for a runtime started without HOME (a containerd shim's).
std::string cache_dir() {
  const char* home = getenv("HOME");
  const char* cache = getenv("KILN_CACHE");
  if ((!home || !*home) && (!cache || !*cache)) return "/var/cache/kiln";
  return image::default_cache_dir();
}

void check_reply(const ApiReply& r, const std::string& what) {
  if (r.status / 100 != 2)
    throw kiln::Error(what + ": the VMM answered " + std::to_string(r.status) + " " + r.body);
}

// Boots the shape with the agent warm in `dir`, snapshots it there once the agent answers.
void make_snapshot(const WarmShape& shape, const fs::path& dir, unsigned boot_timeout_s) {
  std::string uds = (dir / "vsock").string(), api = (dir / "api.sock").string(),
              log = (dir / "console.log").string();
  std::vector<std::string> args{"kiln",       "run",
                                "--kernel",   shape.kernel,
                                "--initrd",   shape.initrd,
                                "--vsock",    "cid=3,uds=" + uds,
                                "--cpus",     std::to_string(shape.cpus),
                                "--memory",   std::to_string(shape.memory),
                                "--api-sock", api};
  for (size_t i = 0; i < shape.shares.size(); ++i) {
    // An empty stand-in for each share: every sandbox restores it on its own directory.
    fs::path stand_in = dir / ("share" + std::to_string(i));
    fs::create_directory(stand_in);
    const Share& s = shape.shares[i];
    args.insert(args.end(), {"--fs", "tag=" + s.tag + ",id=" + share_id(i) + ",path=" +
                                         stand_in.string() + (s.read_only ? ",ro" : "")});
  }
  for (size_t i = 0; i < shape.nets; ++i) {
    // A TAP made for the boot (TUNSETIFF creates it; it goes with the VM): this process's
    // pid keeps it apart from another's.
    std::string tap = "kw" + std::to_string(getpid()) + "n" + std::to_string(i);
    args.insert(args.end(),
                {"--net", "tap=" + tap + ",mac=" + warm_pool_mac(i) + ",id=" + net_id(i)});
  }
  args.insert(args.end(), {"--cmdline", "console=ttyS0 reboot=k panic=1 quiet kiln.warm=1"});
  VmReaper vm(spawn_vm(args, log));
  auto running = [&vm] { return waitpid(vm.pid, nullptr, WNOHANG) == 0; };
  try {
    {
      AgentClient client(AgentClient::connect_vsock(uds, agent::kDefaultPort,
                                                    std::chrono::seconds(boot_timeout_s), running));
      client.handshake(10s);
    }  // closed: the restore resets the guest's connections anyway
    check_reply(vmm_api_call(api, "PATCH", "/vm", R"({"state":"Paused"})"), "pausing it");
    check_reply(vmm_api_call(api, "PUT", "/snapshot/create",
                             nlohmann::json{{"snapshot_type", "Full"},
                                            {"snapshot_path", (dir / "state").string()},
                                            {"mem_file_path", (dir / "memory").string()}}
                                 .dump(),
                             120000),
                "snapshotting it");
  } catch (const std::exception& e) {
    std::string console = tail_of(log);
    throw kiln::Error(std::string("making the warm sandbox snapshot (booting ") + shape.kernel +
                      " with the agent warm" +
                      (shape.nets ? ", on TAPs it makes: that needs CAP_NET_ADMIN" : "") + "): " +
                      e.what() + "; its console:\n" + (console.empty() ? "(empty)" : console));
  }
}

UniqueFd open_lock(const fs::path& root, const std::string& key) {
  UniqueFd lock(open((root / (key + ".lock")).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock) throw_errno("open the warm cache's lock in " + root.string());
  return lock;
}

}  // namespace

void prune_warm_cache(const std::string& root_dir, const std::string& keep, size_t max_entries) {
  const fs::path root(root_dir);
  std::vector<std::pair<fs::file_time_type, std::string>> entries;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    std::string name = e.path().filename().string();
    auto used = fs::last_write_time(e.path() / "state", ec);
    bool making = name.size() > 4 && name.compare(name.size() - 4, 4, ".new") == 0;
    if (!ec && name != keep && !making && e.is_directory()) entries.emplace_back(used, name);
  }
  std::sort(entries.begin(), entries.end());
  for (size_t i = 0; i + max_entries <= entries.size(); ++i) {
    UniqueFd lock = open_lock(root, entries[i].second);
    if (flock(lock.get(), LOCK_EX | LOCK_NB) < 0) continue;  // in use
    fs::remove_all(root / entries[i].second, ec);
  }
}

WarmSnapshot warm_snapshot(const WarmShape& shape, unsigned boot_timeout_s) {
  std::string text = describe(shape);
  fs::path root = fs::path(cache_dir()) / "warm";
  fs::create_directories(root);
  // 16 hex digits: the socket paths under the entry must fit sun_path.
  std::string key = image::sha256_of(text).hex.substr(0, 16);
  fs::path entry = root / key;
  WarmSnapshot snap{(entry / "state").string(), (entry / "memory").string(), open_lock(root, key)};
  if (flock(snap.lock.get(), LOCK_EX) < 0)
    throw_errno("lock the warm cache entry " + entry.string());
  if (!fs::is_regular_file(snap.state)) {
    // Made beside the entry, renamed into place complete.
    fs::path tmp = root / (key + ".new");
    fs::remove_all(tmp);
    fs::create_directory(tmp);
    try {
      make_snapshot(shape, tmp, boot_timeout_s);
      std::ofstream((tmp / "shape.txt").string()) << text;
      fs::remove(tmp / "api.sock");
      fs::remove(tmp / "vsock");
      fs::rename(tmp, entry);
    } catch (...) {
      std::error_code ec;
      fs::remove_all(tmp, ec);
      throw;
    }
    prune_warm_cache(root.string(), key, kMaxEntries);
  }
  // In use from here: shared, so a prune (exclusive, not waiting) leaves it; its last use is
  // the state file's time.
  if (flock(snap.lock.get(), LOCK_SH) < 0) throw_errno("lock " + entry.string() + " shared");
  utimensat(AT_FDCWD, snap.state.c_str(), nullptr, 0);
  return snap;
}

std::string warm_pool_mac(size_t index) {
  char mac[18];
  std::snprintf(mac, sizeof mac, "02:4b:69:6c:6e:%02x", static_cast<unsigned>(index & 0xff));
  return mac;
}

std::vector<std::string> warm_restore_args(const WarmSnapshot& snap, const std::string& uds,
                                           const std::vector<Share>& shares,
                                           const std::vector<std::string>& taps,
                                           const std::string& api_sock) {
  std::vector<std::string> args{"kiln",      "--restore",        snap.state, "--mem",
                                snap.memory, "--vsock-override", uds};
  for (size_t i = 0; i < shares.size(); ++i)
    args.insert(args.end(), {"--fs-override", share_id(i) + "=" + shares[i].path});
  for (size_t i = 0; i < taps.size(); ++i)
    args.insert(args.end(), {"--net-override", net_id(i) + "=" + taps[i]});
  if (!api_sock.empty()) args.insert(args.end(), {"--api-sock", api_sock});
  return args;
}

agent::Configure warm_configure(const std::string& params) {
  agent::Configure c;
  c.params = params;
  c.realtime_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count());
  c.entropy.resize(64);
  if (getrandom(c.entropy.data(), c.entropy.size(), 0) != static_cast<ssize_t>(c.entropy.size()))
    throw_errno("getrandom for the sandbox's entropy");
  return c;
}

}  // namespace kiln::sandbox
