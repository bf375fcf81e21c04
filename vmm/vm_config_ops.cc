#include "vmm/vm_config_ops.h"

#include <linux/if.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace kiln {

namespace {

constexpr uint32_t kMaxVcpus = 1024;
constexpr uint64_t kMinMemoryMib = 16;
constexpr uint64_t kMaxMemoryMib = uint64_t{1} << 20;
constexpr size_t kMaxIdLength = 64;
constexpr uint16_t kMinMtu = 68;

}  // namespace

std::optional<std::string> resource_id_problem(const std::string& id) {
  const bool valid =
      !id.empty() && id.size() <= kMaxIdLength && std::all_of(id.begin(), id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
      });
  if (valid) return std::nullopt;
  return "must be 1 to 64 letters, digits or underscores (API Resource IDs can only contain "
         "alphanumeric characters and underscores)";
}

std::optional<FieldProblem> validate(const MachineConfigUpdate& u) {
  if (u.vcpus && (*u.vcpus == 0 || *u.vcpus > kMaxVcpus))
    return FieldProblem{"vcpu_count", "must be between 1 and 1024"};
  if (u.memory_mib && *u.memory_mib == 0)
    return FieldProblem{"mem_size_mib",
                        "The memory size (MiB) is either 0, or not a multiple of the configured "
                        "page size. Kiln needs between 16 and 1048576"};
  if (u.memory_mib && (*u.memory_mib < kMinMemoryMib || *u.memory_mib > kMaxMemoryMib))
    return FieldProblem{"mem_size_mib", "must be between 16 and 1048576"};
  if (u.smt && *u.smt) return FieldProblem{"smt", "true is not supported by Kiln"};
  return std::nullopt;
}

std::optional<FieldProblem> validate(const BootSourceConfig& boot) {
  if (boot.kernel_path.empty()) return FieldProblem{"kernel_image_path", "is empty"};
  return std::nullopt;
}

std::optional<FieldProblem> validate(const DriveConfig& drive) {
  if (!drive.id.empty())
    if (auto problem = resource_id_problem(drive.id)) return FieldProblem{"drive_id", *problem};
  if (drive.path.empty()) return FieldProblem{"path_on_host", "is empty"};
  return std::nullopt;
}

std::optional<FieldProblem> validate(const NetConfig& net) {
  if (auto problem = resource_id_problem(net.iface_id)) return FieldProblem{"iface_id", *problem};
  const std::string& name = net.host_dev_name;
  if (name.empty() || name.size() >= IFNAMSIZ || name.find_first_of("/ \t\n:") != std::string::npos)
    return FieldProblem{"host_dev_name", "\"" + name + "\" is not a valid interface name (1 to " +
                                             std::to_string(IFNAMSIZ - 1) +
                                             " characters, no '/', ':' or spaces)"};
  if (net.guest_mac && (net.guest_mac->is_multicast() || net.guest_mac->is_zero()))
    return FieldProblem{"guest_mac", net.guest_mac->to_string() + " is not a unicast address"};
  if (net.mtu && *net.mtu < kMinMtu) return FieldProblem{"mtu", "must be between 68 and 65535"};
  return std::nullopt;
}

std::optional<FieldProblem> validate(const BalloonConfig& b, uint64_t memory_mib) {
  if (b.amount_mib > memory_mib)
    return FieldProblem{"amount_mib",
                        "Amount of pages requested is too large: " + std::to_string(b.amount_mib) +
                            " MiB is more than the guest's memory (" + std::to_string(memory_mib) +
                            " MiB)"};
  if (b.stats_polling_interval_s > BalloonConfig::kMaxStatsIntervalS)
    return FieldProblem{
        "stats_polling_interval_s",
        "must be at most " + std::to_string(BalloonConfig::kMaxStatsIntervalS) + " (a day)"};
  return std::nullopt;
}

std::optional<FieldProblem> validate(const VsockConfig& vsock) {
  if (vsock.guest_cid < 3 || vsock.guest_cid > 0xfffffffeu)
    return FieldProblem{"guest_cid", "must be between 3 and 4294967294 (0-2 are reserved)"};
  if (vsock.uds_path.empty()) return FieldProblem{"uds_path", "is empty"};
  // The longest per-port path, <uds_path>_4294967295, must fit in sockaddr_un.
  if (vsock.uds_path.size() + 11 >= sizeof(sockaddr_un::sun_path))
    return FieldProblem{"uds_path", "is too long (at most " +
                                        std::to_string(sizeof(sockaddr_un::sun_path) - 12) +
                                        " bytes, so that <uds_path>_<port> fits a Unix socket)"};
  std::string dir = std::filesystem::path(vsock.uds_path).parent_path().string();
  if (dir.empty()) dir = ".";
  struct stat st {};
  if (::stat(dir.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
    return FieldProblem{"uds_path", "directory " + dir + " does not exist"};
  return std::nullopt;
}

std::optional<FieldProblem> validate(const FsConfig& fs) {
  if (auto problem = resource_id_problem(fs.fs_id)) return FieldProblem{"fs_id", *problem};
  if (fs.tag.empty() || fs.tag.size() > FsConfig::kMaxTagBytes)
    return FieldProblem{"tag", "must be 1 to " + std::to_string(FsConfig::kMaxTagBytes) +
                                   " bytes (what `mount -t virtiofs TAG DIR` names), not " +
                                   std::to_string(fs.tag.size())};
  if (std::any_of(fs.tag.begin(), fs.tag.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
    return FieldProblem{"tag", "must not contain NUL or control characters"};
  if (fs.num_request_queues < 1 || fs.num_request_queues > FsConfig::kMaxRequestQueues)
    return FieldProblem{"num_request_queues",
                        "must be between 1 and " + std::to_string(FsConfig::kMaxRequestQueues)};
  if (fs.path.empty()) return FieldProblem{"path", "is empty"};
  return std::nullopt;
}

std::optional<FieldProblem> validate(const TokenBucketConfig& b) {
  const std::string max_tokens = std::to_string(TokenBucketConfig::kMaxTokens);
  if (b.size == 0 || b.size > TokenBucketConfig::kMaxTokens)
    return FieldProblem{"size", "must be between 1 and " + max_tokens + " (2^63-1)"};
  if (b.one_time_burst > TokenBucketConfig::kMaxTokens)
    return FieldProblem{"one_time_burst", "must be at most " + max_tokens + " (2^63-1)"};
  if (b.refill_time_ms == 0 || b.refill_time_ms > TokenBucketConfig::kMaxRefillTimeMs)
    return FieldProblem{"refill_time", "must be between 1 and " +
                                           std::to_string(TokenBucketConfig::kMaxRefillTimeMs) +
                                           " (ms, about 292 years)"};
  return std::nullopt;
}

std::optional<FieldProblem> validate(const MetricsConfig& metrics) {
  if (metrics.path.empty()) return FieldProblem{"metrics_path", "is empty"};
  return std::nullopt;
}

std::optional<FieldProblem> apply_machine_config(VmConfig& config, const MachineConfigUpdate& u,
                                                 bool patch) {
  if (auto problem = validate(u)) return problem;
  const HugePages backing = u.huge_pages.value_or(patch ? config.huge_pages : HugePages::kNone);
  // 2 MiB pages back whole 2 MiB: the size must be a multiple (checked on the values that
  // would result, so a refused request changes nothing).
  if (backing == HugePages::k2M && u.memory_mib.value_or(config.memory_mib) % 2 != 0)
    return FieldProblem{u.huge_pages ? "huge_pages" : "mem_size_mib",
                        "huge_pages 2M needs mem_size_mib to be a multiple of 2"};
  if (u.vcpus) config.vcpus = *u.vcpus;
  if (u.memory_mib) config.memory_mib = *u.memory_mib;
  config.huge_pages = backing;
  if (u.smt) config.smt = *u.smt;
  if (u.track_dirty_pages) config.track_dirty_pages = *u.track_dirty_pages;
  return std::nullopt;
}

std::optional<FieldProblem> apply_boot_source(VmConfig& config, const BootSourceConfig& boot) {
  if (auto problem = validate(boot)) return problem;
  config.kernel_path = boot.kernel_path;
  config.cmdline = boot.cmdline.value_or(kDefaultCmdline);
  config.initrd_path = boot.initrd_path;
  return std::nullopt;
}

std::optional<FieldProblem> add_drive(VmConfig& config, const DriveConfig& drive) {
  if (auto problem = validate(drive)) return problem;
  auto same_id = [&](const DriveConfig& d) { return d.id == drive.id; };
  if (drive.is_root) {
    auto other_root = std::find_if(config.drives.begin(), config.drives.end(),
                                   [&](const DriveConfig& d) { return d.is_root && !same_id(d); });
    if (other_root != config.drives.end())
      return FieldProblem{"is_root_device", "A root block device already exists! (drive \"" +
                                                other_root->id + "\" is the root device)"};
  }
  std::erase_if(config.drives, same_id);
  if (drive.is_root) {
    config.drives.insert(config.drives.begin(), drive);
  } else {
    config.drives.push_back(drive);
  }
  return std::nullopt;
}

std::optional<FieldProblem> add_network_interface(VmConfig& config, const NetConfig& net) {
  if (auto problem = validate(net)) return problem;
  for (const NetConfig& other : config.nets) {
    if (other.iface_id == net.iface_id) continue;  // replaced below
    if (other.host_dev_name == net.host_dev_name)
      return FieldProblem{"host_dev_name",
                          "Could not create the network device: TAP " + net.host_dev_name +
                              " is already used by interface \"" + other.iface_id + "\""};
    if (net.guest_mac && other.guest_mac == net.guest_mac)
      return FieldProblem{"guest_mac",
                          "The MAC address is already in use: " + net.guest_mac->to_string() +
                              " (by interface \"" + other.iface_id + "\")"};
  }
  auto existing = std::find_if(config.nets.begin(), config.nets.end(),
                               [&](const NetConfig& n) { return n.iface_id == net.iface_id; });
  if (existing != config.nets.end()) {
    *existing = net;
  } else {
    config.nets.push_back(net);
  }
  return std::nullopt;
}

std::optional<FieldProblem> add_fs(VmConfig& config, const FsConfig& fs) {
  if (auto problem = validate(fs)) return problem;
  struct stat st {};
  if (::stat(fs.path.c_str(), &st) != 0)
    return FieldProblem{
        "path", fs.path + ": " + std::strerror(errno) + " (the shared directory must exist)"};
  if (!S_ISDIR(st.st_mode)) return FieldProblem{"path", fs.path + " is not a directory"};
  for (const FsConfig& other : config.fs) {
    if (other.fs_id == fs.fs_id) continue;  // replaced below
    if (other.tag == fs.tag)
      return FieldProblem{"tag", "\"" + fs.tag + "\" is already the tag of share \"" + other.fs_id +
                                     "\" (tags must be unique)"};
  }
  auto existing = std::find_if(config.fs.begin(), config.fs.end(),
                               [&](const FsConfig& other) { return other.fs_id == fs.fs_id; });
  if (existing != config.fs.end()) {
    *existing = fs;
  } else {
    config.fs.push_back(fs);
  }
  return std::nullopt;
}

void apply_logger(VmConfig& config, const LoggerUpdate& u) {
  if (u.path) config.logger.path = *u.path;
  if (u.level) config.logger.level = *u.level;
  if (u.show_level) config.logger.show_level = *u.show_level;
  if (u.show_log_origin) config.logger.show_log_origin = *u.show_log_origin;
}

std::optional<FieldProblem> set_metrics(VmConfig& config, const MetricsConfig& metrics) {
  if (auto problem = validate(metrics)) return problem;
  config.metrics = metrics;
  return std::nullopt;
}

void set_entropy(VmConfig& config, const EntropyConfig& entropy) {
  config.entropy = entropy;
}

void set_serial(VmConfig& config, const std::string& serial_out_path) {
  config.serial_out_path = serial_out_path;
}

std::optional<FieldProblem> set_vsock(VmConfig& config, const VsockConfig& vsock) {
  if (auto problem = validate(vsock)) return problem;
  config.vsock = vsock;
  return std::nullopt;
}

void set_console(VmConfig& config, ConsoleMode mode) {
  config.console = mode;
  if (mode == ConsoleMode::kVirtio && config.cmdline == kDefaultCmdline)
    config.cmdline = kDefaultVirtioConsoleCmdline;
}

}  // namespace kiln
