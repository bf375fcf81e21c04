#include "oci/spec.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>

#include "agent/boot_config.h"
#include "base/error.h"
#include "base/json_nesting.h"
#include "base/text_parse.h"

namespace kiln::oci {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kMaxConfig = 4 << 20;
constexpr size_t kMaxNesting = 64;  // nlohmann's walks recurse (base/json_nesting.h)

[[noreturn]] void bad(const std::string& field, const std::string& why) {
  throw UsageError("config.json: " + field + ": " + why);
}

std::string field(const std::string& path, const char* key) {
  return path.empty() ? key : path + "." + key;
}

const json& member(const json& obj, const char* key) {
  static const json kNull;
  auto it = obj.find(key);
  return it == obj.end() ? kNull : *it;
}

std::string string_at(const json& obj, const char* key, const std::string& path, bool required) {
  const json& v = member(obj, key);
  if (v.is_null()) {
    if (required) bad(field(path, key), "is required");
    return "";
  }
  if (!v.is_string()) bad(field(path, key), "must be a string");
  return v.get<std::string>();
}

uint64_t uint_at(const json& obj, const char* key, const std::string& path, uint64_t dflt,
                 uint64_t max) {
  const json& v = member(obj, key);
  if (v.is_null()) return dflt;
  if (!v.is_number_unsigned() || v.get<uint64_t>() > max)
    bad(field(path, key), "must be a number from 0 to " + std::to_string(max));
  return v.get<uint64_t>();
}

bool bool_at(const json& obj, const char* key, const std::string& path) {
  const json& v = member(obj, key);
  if (v.is_null()) return false;
  if (!v.is_boolean()) bad(field(path, key), "must be true or false");
  return v.get<bool>();
}

std::vector<std::string> strings_at(const json& obj, const char* key, const std::string& path) {
  const json& v = member(obj, key);
  std::vector<std::string> out;
  if (v.is_null()) return out;
  if (!v.is_array()) bad(field(path, key), "must be an array of strings");
  for (const auto& e : v) {
    if (!e.is_string()) bad(field(path, key), "must be an array of strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

agent::Start read_process(const json& p) {
  if (!p.is_object()) bad("process", "is required (an object)");
  agent::Start s;
  s.argv = strings_at(p, "args", "process");
  if (s.argv.empty()) bad("process.args", "must name the program");
  s.env = strings_at(p, "env", "process");
  for (const auto& e : s.env)
    if (e.find('=') == std::string::npos || e[0] == '=')
      bad("process.env", "'" + e.substr(0, 64) + "' is not KEY=VALUE");
  s.cwd = string_at(p, "cwd", "process", true);
  if (s.cwd.empty() || s.cwd[0] != '/') bad("process.cwd", "must be an absolute path");
  s.create_cwd = true;  // as runc, which makes a missing cwd
  s.terminal = bool_at(p, "terminal", "process");
  if (const json& size = member(p, "consoleSize"); !size.is_null()) {
    if (!size.is_object()) bad("process.consoleSize", "must be an object");
    s.rows = static_cast<uint16_t>(uint_at(size, "height", "process.consoleSize", 24, 65535));
    s.cols = static_cast<uint16_t>(uint_at(size, "width", "process.consoleSize", 80, 65535));
  }
  const json& user = member(p, "user");
  if (!user.is_null()) {
    if (!user.is_object()) bad("process.user", "must be an object");
    s.uid = static_cast<uint32_t>(uint_at(user, "uid", "process.user", 0, 0xfffffffe));
    s.gid = static_cast<uint32_t>(uint_at(user, "gid", "process.user", 0, 0xfffffffe));
    s.umask = static_cast<uint32_t>(uint_at(user, "umask", "process.user", 022, 0777));
    if (const json& g = member(user, "additionalGids"); !g.is_null()) {
      if (!g.is_array() || g.size() > 64)
        bad("process.user.additionalGids", "must be an array of at most 64 gids");
      for (const auto& id : g) {
        if (!id.is_number_unsigned() || id.get<uint64_t>() > 0xfffffffe)
          bad("process.user.additionalGids", "must hold gids");
        s.groups.push_back(id.get<uint32_t>());
      }
    }
    if (!string_at(user, "username", "process.user", false).empty())
      bad("process.user.username", "is for Windows containers");
  }
  if (const json& r = member(p, "rlimits"); !r.is_null()) {
    if (!r.is_array() || r.size() > 16) bad("process.rlimits", "must be an array of at most 16");
    for (const auto& l : r) {
      if (!l.is_object()) bad("process.rlimits", "must hold objects");
      std::string type = string_at(l, "type", "process.rlimits[]", true);
      if (type.rfind("RLIMIT_", 0) != 0)
        bad("process.rlimits[].type", "'" + type + "' is not RLIMIT_*");
      std::string name = type.substr(7);
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      agent::Rlimit lim{name, uint_at(l, "soft", "process.rlimits[]", 0, UINT64_MAX),
                        uint_at(l, "hard", "process.rlimits[]", 0, UINT64_MAX)};
      if (lim.soft > lim.hard) bad("process.rlimits", type + ": soft is above hard");
      s.rlimits.push_back(lim);
    }
  }
  s.no_new_privileges = bool_at(p, "noNewPrivileges", "process");
  return s;
}

bool has_option(const json& m, const char* opt) {
  const json& o = member(m, "options");
  if (!o.is_array()) return false;
  return std::any_of(o.begin(), o.end(), [&](const json& e) { return e == opt; });
}

// The mounts the guest makes itself (agent/main.cc: /proc, /sys, devtmpfs /dev, /dev/pts,
// /dev/shm); those the kit's kernel cannot make (mqueue, cgroups: see README.md) are absent.
// (The guest's own tmpfs on /run and /tmp are covered by the spec's, with its options.)
bool guest_made(const std::string& type, const std::string& dest) {
  static const std::set<std::pair<std::string, std::string>> kOwn = {{"proc", "/proc"},
                                                                     {"sysfs", "/sys"},
                                                                     {"tmpfs", "/dev"},
                                                                     {"devpts", "/dev/pts"},
                                                                     {"tmpfs", "/dev/shm"},
                                                                     {"bind", "/dev/shm"},
                                                                     {"mqueue", "/dev/mqueue"},
                                                                     {"cgroup", "/sys/fs/cgroup"},
                                                                     {"cgroup2", "/sys/fs/cgroup"}};
  return kOwn.count({type, dest}) > 0;
}

// A tmpfs mount as the agent's kiln.tmpfs ("DEST:OPTS"). Propagation options are dropped: a
// mount in the guest has no peers on the host to propagate to or from.
void read_tmpfs(const json& m, const std::string& at, const std::string& dest,
                sandbox::RunOptions& run) {
  static const std::set<std::string> kPropagation = {
      "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"};
  const json& o = member(m, "options");
  if (!o.is_null() && !o.is_array()) bad(at + ".options", "must be an array of strings");
  std::string value = dest, sep = ":";
  if (o.is_array())
    for (const auto& opt : o) {
      if (!opt.is_string()) bad(at + ".options", "must be an array of strings");
      std::string s = opt.get<std::string>();
      if (kPropagation.count(s)) continue;
      if (s.find_first_of(":,") != std::string::npos)
        bad(at + ".options", "'" + s + "' holds ':' or ','");
      value += sep + s;
      sep = ",";
    }
  try {
    agent::parse_tmpfs(value);
  } catch (const std::runtime_error& e) {
    bad(at, e.what());
  }
  if (run.tmpfs.size() >= 16) bad("mounts", "at most 16 tmpfs mounts");
  run.tmpfs.push_back(value);
}

void read_mounts(const json& mounts, sandbox::RunOptions& run) {
  if (mounts.is_null()) return;
  if (!mounts.is_array() || mounts.size() > 128) bad("mounts", "must be an array of at most 128");
  for (size_t i = 0; i < mounts.size(); ++i) {
    const json& m = mounts[i];
    std::string at = "mounts[" + std::to_string(i) + "]";
    if (!m.is_object()) bad(at, "must be an object");
    std::string dest = string_at(m, "destination", at, true);
    std::string type = string_at(m, "type", at, false);
    std::string source = string_at(m, "source", at, false);
    bool bind = type == "bind" || has_option(m, "bind") || has_option(m, "rbind");
    if (dest.empty() || dest[0] != '/') bad(at + ".destination", "must be an absolute path");
    if (guest_made(bind ? "bind" : type, dest)) continue;
    if (type == "tmpfs" && !bind) {
      read_tmpfs(m, at, dest, run);
      continue;
    }
    if (!bind)
      bad(at, "a " + (type.empty() ? std::string("typeless") : type) + " mount at " + dest +
                  " is not supported (kiln-oci makes proc, sysfs, devpts, /dev and /dev/shm "
                  "itself, makes tmpfs mounts in the guest, and shares bind mounts)");
    std::error_code ec;
    auto st = fs::status(source, ec);
    if (ec || source.empty() || source[0] != '/')
      bad(at + ".source", "'" + source + "' does not exist (an absolute host path)");
    if (fs::is_directory(st)) {
      try {
        run.volumes.push_back(
            sandbox::parse_volume(source + ":" + dest + (has_option(m, "ro") ? ":ro" : "")));
      } catch (const kiln::Error& e) {
        bad(at, e.what());
      }
    } else if (fs::is_regular_file(st)) {
      if (dest.find_first_of(" \t\n:") != std::string::npos ||
          source.find(',') != std::string::npos)
        bad(at, "paths must not hold whitespace, ':' or ','");
      run.files.push_back({source, dest});
    } else {
      bad(at + ".source", source + " is neither a directory nor a file");
    }
  }
}

std::string network_namespace(const json& linux_obj) {
  const json& ns = member(linux_obj, "namespaces");
  if (!ns.is_array()) return "";
  for (const auto& n : ns)
    if (n.is_object() && n.value("type", "") == "network" && n.contains("path") &&
        n["path"].is_string())
      return n["path"].get<std::string>();
  return "";
}

void read_resources(const json& linux_obj, sandbox::RunOptions& run) {
  const json& r = member(linux_obj, "resources");
  if (r.is_null()) return;
  if (!r.is_object()) bad("linux.resources", "must be an object");
  if (const json& mem = member(r, "memory"); mem.is_object()) {
    const json& limit = member(mem, "limit");
    if (limit.is_number_integer() && limit.get<int64_t>() > 0) {
      uint64_t mib = (limit.get<uint64_t>() + (1 << 20) - 1) >> 20;
      if (mib < 32 || mib > 65536)
        bad("linux.resources.memory.limit", "must be 32 MiB to 64 GiB for a microVM");
      run.memory = static_cast<unsigned>(mib) + kMemoryOverheadMiB;
    }
  }
  if (const json& cpu = member(r, "cpu"); cpu.is_object()) {
    const json& quota = member(cpu, "quota");
    uint64_t period = uint_at(cpu, "period", "linux.resources.cpu", 100000, 1000000);
    if (quota.is_number_integer() && quota.get<int64_t>() > 0 && period > 0) {
      uint64_t n = (quota.get<uint64_t>() + period - 1) / period;
      run.cpus = static_cast<unsigned>(std::clamp<uint64_t>(n, 1, 254));
    } else if (std::string set = string_at(cpu, "cpus", "linux.resources.cpu", false);
               !set.empty()) {
      unsigned count = 0;  // "0-3,5": 5 cpus
      size_t pos = 0;
      while (pos < set.size()) {
        size_t end = set.find(',', pos);
        std::string part =
            set.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
        size_t dash = part.find('-');
        try {
          unsigned lo = std::stoul(part.substr(0, dash));
          unsigned hi = dash == std::string::npos ? lo : std::stoul(part.substr(dash + 1));
          if (hi < lo || hi > 4095) throw std::out_of_range("");
          count += hi - lo + 1;
        } catch (const std::exception&) {
          bad("linux.resources.cpu.cpus", "'" + set + "' is not a cpu list such as 0-3,5");
        }
        if (end == std::string::npos) break;
        pos = end + 1;
      }
      run.cpus = std::clamp(count, 1u, 254u);
    }
  }
}

// Kiln's own annotations (io.kiln.*), each checked; an unknown one is refused rather than
// ignored. io.kiln.timings=FILE appends the container's phases to FILE; io.kiln.vcpus and
// io.kiln.memory_mib size the microVM (over the defaults; linux.resources, read after, win).
void read_kiln_annotations(const std::map<std::string, std::string>& a, sandbox::RunOptions& run) {
  for (const auto& [key, value] : a) {
    if (key.rfind("io.kiln.", 0) != 0) continue;
    std::string at = "annotations." + key;
    if (key == "io.kiln.timings") {
      if (value.empty() || value[0] != '/') bad(at, "must be an absolute path");
      run.timings_file = value;
    } else if (key == "io.kiln.vcpus") {
      long n = parse_bounded(value, 1, 254);
      if (n < 0) bad(at, "'" + value + "' is not a vCPU count from 1 to 254");
      run.cpus = static_cast<unsigned>(n);
    } else if (key == "io.kiln.memory_mib") {
      long n = parse_bounded(value, 32, 65536);
      if (n < 0) bad(at, "'" + value + "' is not a guest memory size from 32 to 65536 MiB");
      run.memory = static_cast<unsigned>(n);
    } else {
      bad(at, "unknown (known: io.kiln.timings, io.kiln.vcpus, io.kiln.memory_mib)");
    }
  }
}

}  // namespace

sandbox::RunOptions resources_update(const std::string& text, const sandbox::RunOptions& current) {
  if (text.size() > kMaxConfig) throw UsageError("--resources: larger than 4 MiB");
  if (json_nesting_exceeded(text, kMaxNesting))
    throw UsageError("--resources: nested more than " + std::to_string(kMaxNesting) + " levels");
  json r = json::parse(text, nullptr, false);
  if (r.is_discarded() || !r.is_object()) throw UsageError("--resources: not a JSON object");
  auto refuse = [](const std::string& f, const std::string& why) {
    throw UsageError("--resources: linux.resources." + f + ": " + why);
  };
  // What sizes the microVM is read as create reads it; anything else is a host cgroup
  // setting, which kiln-oci does not manage (README.md, "kiln-oci").
  static const std::set<std::string> kSize = {"memory.limit", "cpu.quota", "cpu.period",
                                              "cpu.cpus"};
  for (const auto& [key, value] : r.items()) {
    if (value.is_null()) continue;
    if ((key == "memory" || key == "cpu") && value.is_object()) {
      for (const auto& [k, v] : value.items())
        if (!v.is_null() && !kSize.count(key + "." + k))
          refuse(key + "." + k,
                 "kiln-oci applies no host cgroup limits (a microVM's size is "
                 "its memory and vCPUs)");
      continue;
    }
    refuse(key,
           "kiln-oci applies no host cgroup limits (a microVM's size is its memory and "
           "vCPUs)");
  }
  sandbox::RunOptions next = current;
  try {
    read_resources(json{{"resources", r}}, next);
  } catch (const UsageError& e) {
    std::string m = e.what();  // "config.json: linux.resources.x: ..."
    throw UsageError("--resources" + m.substr(m.find(':')));
  }
  if (next.memory != current.memory)
    refuse("memory.limit", "a running microVM's memory cannot change (it has " +
                               std::to_string(current.memory) +
                               " MiB of guest RAM): create the container again");
  if (next.cpus != current.cpus)
    refuse("cpu", "a running microVM's vCPU count cannot change (it has " +
                      std::to_string(current.cpus) + "): create the container again");
  return next;
}

agent::Start read_process_text(const std::string& text, const std::string& what) {
  if (text.size() > kMaxConfig) throw UsageError(what + ": larger than 4 MiB");
  if (json_nesting_exceeded(text, kMaxNesting))
    throw UsageError(what + ": nested more than " + std::to_string(kMaxNesting) + " levels");
  json p = json::parse(text, nullptr, false);
  if (p.is_discarded() || !p.is_object()) throw UsageError(what + ": not a JSON object");
  try {
    return read_process(p);
  } catch (const UsageError& e) {
    std::string m = e.what();  // "config.json: process.x: ..." -> "WHAT: process.x: ..."
    throw UsageError(what + m.substr(m.find(':')));
  }
}

Bundle read_spec(const std::string& text, const std::string& dir,
                 const sandbox::RunOptions& defaults) {
  if (text.size() > kMaxConfig) throw UsageError("config.json: larger than 4 MiB");
  if (auto line = json_nesting_exceeded(text, kMaxNesting))
    throw UsageError("config.json:" + std::to_string(*line) + ": nested more than " +
                     std::to_string(kMaxNesting) + " levels");
  json spec = json::parse(text, nullptr, false);
  if (spec.is_discarded() || !spec.is_object()) throw UsageError("config.json: not a JSON object");
  Bundle b;
  b.dir = dir;
  std::string version = string_at(spec, "ociVersion", "", true);
  if (version.rfind("1.", 0) != 0) bad("ociVersion", "'" + version + "': kiln-oci reads 1.x");

  if (const json& hooks = member(spec, "hooks"); hooks.is_object())
    for (const auto& [name, list] : hooks.items())
      if (list.is_array() && !list.empty())
        bad("hooks." + name, "kiln-oci runs no OCI hooks (the process runs in a microVM)");
  const json& root = member(spec, "root");
  if (!root.is_object()) bad("root", "is required (an object)");
  fs::path rootfs = string_at(root, "path", "root", true);
  if (rootfs.is_relative()) rootfs = fs::path(b.dir) / rootfs;
  b.rootfs = rootfs.lexically_normal().string();
  if (!fs::is_directory(b.rootfs)) bad("root.path", b.rootfs + " is not a directory");
  b.read_only = bool_at(root, "readonly", "root");

  b.run = defaults;
  b.process = read_process(member(spec, "process"));
  b.terminal = b.process.terminal;
  b.run.hostname = string_at(spec, "hostname", "", false);
  if (b.run.hostname.size() > 64 || b.run.hostname.find_first_of(" \t\n/") != std::string::npos)
    bad("hostname", "must be at most 64 bytes without whitespace or '/'");
  read_mounts(member(spec, "mounts"), b.run);
  if (b.run.volumes.size() > 16) bad("mounts", "at most 16 directory bind mounts");
  if (const json& a = member(spec, "annotations"); a.is_object())
    for (const auto& [k, v] : a.items())
      if (v.is_string()) b.annotations[k] = v.get<std::string>();
  read_kiln_annotations(b.annotations, b.run);
  const json& linux_obj = member(spec, "linux");
  if (!linux_obj.is_null() && !linux_obj.is_object()) bad("linux", "must be an object");
  if (linux_obj.is_object()) {
    read_resources(linux_obj, b.run);  // the engine's limits win over annotations
    b.netns = network_namespace(linux_obj);
  }
  b.run.workload.root = b.rootfs;
  return b;
}

}  // namespace kiln::oci
