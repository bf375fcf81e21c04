#include "api/vm_json.h"

#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <filesystem>

#include "api/json_fields.h"

namespace kiln::api {

namespace {

using nlohmann::json;

constexpr uint32_t kMaxVcpus = 1024;
constexpr uint64_t kMinMemoryMib = 16;
constexpr uint64_t kMaxMemoryMib = uint64_t{1} << 20;

const char* const kLogLevels[] = {"Error", "Warning", "Info", "Debug", "Trace", "Off"};

}  // namespace

void apply_machine_config(VmConfig& config, const json& body, bool patch) {
  JsonFields f(body, "machine-config");
  auto vcpus = patch ? f.optional<uint32_t>("vcpu_count") : f.required<uint32_t>("vcpu_count");
  auto mem = patch ? f.optional<uint64_t>("mem_size_mib") : f.required<uint64_t>("mem_size_mib");
  auto smt = f.optional<bool>("smt");
  auto dirty = f.optional<bool>("track_dirty_pages");
  auto cpu_template = f.optional<std::string>("cpu_template");
  auto huge_pages = f.optional<std::string>("huge_pages");
  f.reject_unknown();
  if (vcpus && (*vcpus == 0 || *vcpus > kMaxVcpus))
    throw FieldError("machine-config", "vcpu_count", "must be between 1 and 1024");
  if (mem && (*mem < kMinMemoryMib || *mem > kMaxMemoryMib))
    throw FieldError("machine-config", "mem_size_mib", "must be between 16 and 1048576");
  if (smt && *smt) throw FieldError("machine-config", "smt", "true is not supported by Kiln");
  if (cpu_template && *cpu_template != "None")
    throw FieldError("machine-config", "cpu_template", "only \"None\" is supported");
  std::optional<HugePages> backing = patch ? config.huge_pages : HugePages::kNone;
  if (huge_pages && !(backing = huge_pages_from_name(*huge_pages)))
    throw FieldError("machine-config", "huge_pages", "must be one of None, Transparent, 2M");
  // 2 MiB pages back whole 2 MiB: the size must be a multiple (checked on the values that
  // would result, so a refused request changes nothing).
  if (*backing == HugePages::k2M && mem.value_or(config.memory_mib) % 2 != 0)
    throw FieldError("machine-config", huge_pages ? "huge_pages" : "mem_size_mib",
                     "huge_pages 2M needs mem_size_mib to be a multiple of 2");
  if (vcpus) config.vcpus = *vcpus;
  if (mem) config.memory_mib = *mem;
  config.huge_pages = *backing;
  if (smt) config.smt = *smt;
  if (dirty) config.track_dirty_pages = *dirty;
}

void apply_boot_source(VmConfig& config, const json& body) {
  JsonFields f(body, "boot-source");
  auto kernel = f.required<std::string>("kernel_image_path");
  auto args = f.optional<std::string>("boot_args");
  auto initrd = f.optional<std::string>("initrd_path");
  f.reject_unknown();
  if (kernel.empty()) throw FieldError("boot-source", "kernel_image_path", "is empty");
  config.kernel_path = kernel;
  config.cmdline = args.value_or(kDefaultCmdline);
  config.initrd_path = initrd.value_or("");
}

void apply_drive(VmConfig& config, const std::string& id, const json& body,
                 const std::string& what) {
  JsonFields f(body, what);
  auto drive_id = f.required<std::string>("drive_id");
  auto path = f.optional<std::string>("path_on_host");
  auto is_root = f.required<bool>("is_root_device");
  auto read_only = f.optional<bool>("is_read_only");
  auto cache = f.optional<std::string>("cache_type");
  auto engine = f.optional<std::string>("io_engine");
  f.ignore("partuuid");
  f.ignore("rate_limiter");
  auto socket = f.optional<std::string>("socket");
  f.reject_unknown();
  if (drive_id != id)
    throw FieldError(what, "drive_id",
                     "\"" + drive_id + "\" does not match the path's \"" + id + "\"");
  if (drive_id.empty() || drive_id.size() > 64 ||
      !std::all_of(drive_id.begin(), drive_id.end(),
                   [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }))
    throw FieldError(what, "drive_id", "must be 1 to 64 letters, digits or underscores");
  if (socket) throw FieldError(what, "socket", "vhost-user drives are not supported");
  if (!path || path->empty()) throw FieldError(what, "path_on_host", "missing (required)");
  if (cache && *cache != "Unsafe" && *cache != "Writeback")
    throw FieldError(what, "cache_type", "must be \"Unsafe\" or \"Writeback\"");
  if (engine && *engine != "Sync" && *engine != "Async")
    throw FieldError(what, "io_engine", "must be \"Sync\" or \"Async\"");

  DriveConfig drive{*path, read_only.value_or(false), drive_id, is_root};
  auto existing = std::find_if(config.drives.begin(), config.drives.end(),
                               [&](const DriveConfig& d) { return d.id == id; });
  if (is_root) {
    auto other_root = std::find_if(config.drives.begin(), config.drives.end(),
                                   [&](const DriveConfig& d) { return d.is_root && d.id != id; });
    if (other_root != config.drives.end())
      throw FieldError(what, "is_root_device",
                       "drive \"" + other_root->id + "\" is already the root device");
  }
  if (existing != config.drives.end()) config.drives.erase(existing);
  if (is_root) {
    config.drives.insert(config.drives.begin(), drive);
  } else {
    config.drives.push_back(drive);
  }
}

void apply_logger(VmConfig& config, const json& body) {
  JsonFields f(body, "logger");
  auto path = f.optional<std::string>("log_path");
  auto level = f.optional<std::string>("level");
  auto show_level = f.optional<bool>("show_level");
  auto show_origin = f.optional<bool>("show_log_origin");
  f.ignore("module");
  f.reject_unknown();
  if (level && std::none_of(std::begin(kLogLevels), std::end(kLogLevels),
                            [&](const char* l) { return *level == l; }))
    throw FieldError("logger", "level", "must be one of Error, Warning, Info, Debug, Trace, Off");
  if (path) config.logger.path = *path;
  if (level) config.logger.level = *level;
  if (show_level) config.logger.show_level = *show_level;
  if (show_origin) config.logger.show_log_origin = *show_origin;
}

void apply_metrics(VmConfig& config, const json& body) {
  JsonFields f(body, "metrics");
  auto path = f.required<std::string>("metrics_path");
  f.reject_unknown();
  if (path.empty()) throw FieldError("metrics", "metrics_path", "is empty");
  config.metrics_path = path;
}

void apply_console(VmConfig& config, const json& body) {
  JsonFields f(body, "console");
  auto mode = f.required<std::string>("mode");
  f.reject_unknown();
  if (mode == "serial") {
    config.console = ConsoleMode::kSerial;
  } else if (mode == "virtio") {
    config.console = ConsoleMode::kVirtio;
    if (config.cmdline == kDefaultCmdline) config.cmdline = kDefaultVirtioConsoleCmdline;
  } else if (mode == "none") {
    config.console = ConsoleMode::kNone;
  } else {
    throw FieldError("console", "mode", "must be \"serial\", \"virtio\" or \"none\"");
  }
}

TokenBucketConfig parse_token_bucket(const json& body, const std::string& what) {
  JsonFields f(body, what);
  TokenBucketConfig b;
  b.size = f.required<uint64_t>("size");
  b.one_time_burst = f.optional<uint64_t>("one_time_burst").value_or(0);
  b.refill_time_ms = f.required<uint64_t>("refill_time");
  f.reject_unknown();
  if (b.size == 0) throw FieldError(what, "size", "must be at least 1");
  if (b.refill_time_ms == 0) throw FieldError(what, "refill_time", "must be at least 1 (ms)");
  return b;
}

json token_bucket_json(const TokenBucketConfig& b) {
  return {
      {"size", b.size}, {"one_time_burst", b.one_time_burst}, {"refill_time", b.refill_time_ms}};
}

void apply_entropy(VmConfig& config, const json& body) {
  JsonFields f(body, "entropy");
  auto limiter = f.optional<json>("rate_limiter");
  f.reject_unknown();
  EntropyConfig entropy;
  if (limiter) {
    JsonFields l(*limiter, "entropy.rate_limiter");
    auto bandwidth = l.optional<json>("bandwidth");
    auto ops = l.optional<json>("ops");
    l.reject_unknown();
    if (ops)
      throw FieldError("entropy.rate_limiter", "ops",
                       "is not supported for entropy; limit bytes with \"bandwidth\"");
    if (bandwidth)
      entropy.bandwidth = parse_token_bucket(*bandwidth, "entropy.rate_limiter.bandwidth");
  }
  config.entropy = entropy;
}

json entropy_json(const VmConfig& config) {
  if (!config.entropy) return nullptr;
  json e = json::object();
  if (config.entropy->bandwidth)
    e["rate_limiter"] = {{"bandwidth", token_bucket_json(*config.entropy->bandwidth)}};
  return e;
}

void apply_serial(VmConfig& config, const json& body) {
  JsonFields f(body, "serial");
  auto path = f.required<std::string>("serial_out_path");
  f.reject_unknown();
  config.serial_out_path = path;
}

std::optional<VsockProblem> vsock_problem(const VsockConfig& vsock) {
  if (vsock.guest_cid < 3 || vsock.guest_cid > 0xfffffffeu)
    return VsockProblem{"guest_cid", "must be between 3 and 4294967294 (0-2 are reserved)"};
  if (vsock.uds_path.empty()) return VsockProblem{"uds_path", "is empty"};
  // The longest per-port path, <uds_path>_4294967295, must fit in sockaddr_un.
  if (vsock.uds_path.size() + 11 >= sizeof(sockaddr_un::sun_path))
    return VsockProblem{"uds_path", "is too long (at most " +
                                        std::to_string(sizeof(sockaddr_un::sun_path) - 12) +
                                        " bytes, so that <uds_path>_<port> fits a Unix socket)"};
  std::string dir = std::filesystem::path(vsock.uds_path).parent_path().string();
  if (dir.empty()) dir = ".";
  struct stat st {};
  if (::stat(dir.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
    return VsockProblem{"uds_path", "directory " + dir + " does not exist"};
  return std::nullopt;
}

void apply_vsock(VmConfig& config, const json& body) {
  JsonFields f(body, "vsock");
  VsockConfig vsock;
  vsock.guest_cid = f.required<uint64_t>("guest_cid");
  vsock.uds_path = f.required<std::string>("uds_path");
  vsock.vsock_id = f.optional<std::string>("vsock_id").value_or("");
  f.reject_unknown();
  if (auto p = vsock_problem(vsock)) throw FieldError("vsock", p->field, p->problem);
  config.vsock = vsock;
}

json machine_config_json(const VmConfig& config) {
  return json{{"vcpu_count", config.vcpus},
              {"mem_size_mib", config.memory_mib},
              {"smt", config.smt},
              {"track_dirty_pages", config.track_dirty_pages},
              {"huge_pages", std::string(huge_pages_name(config.huge_pages))}};
}

json vm_config_json(const VmConfig& config) {
  json drives = json::array();
  for (const DriveConfig& d : config.drives)
    drives.push_back({{"drive_id", d.id},
                      {"path_on_host", d.path},
                      {"is_root_device", d.is_root},
                      {"is_read_only", d.read_only},
                      {"cache_type", "Unsafe"},
                      {"io_engine", "Sync"}});
  json boot = nullptr;
  if (!config.kernel_path.empty()) {
    boot = {{"kernel_image_path", config.kernel_path}, {"boot_args", config.cmdline}};
    if (!config.initrd_path.empty()) boot["initrd_path"] = config.initrd_path;
  }
  json logger = nullptr;
  if (!config.logger.path.empty())
    logger = {{"log_path", config.logger.path},
              {"level", config.logger.level},
              {"show_level", config.logger.show_level},
              {"show_log_origin", config.logger.show_log_origin}};
  json metrics = nullptr;
  if (!config.metrics_path.empty()) metrics = {{"metrics_path", config.metrics_path}};
  json vsock = nullptr;
  if (config.vsock) {
    vsock = {{"guest_cid", config.vsock->guest_cid}, {"uds_path", config.vsock->uds_path}};
    if (!config.vsock->vsock_id.empty()) vsock["vsock_id"] = config.vsock->vsock_id;
  }
  return json{{"balloon", nullptr},
              {"drives", drives},
              {"boot-source", boot},
              {"cpu-config", nullptr},
              {"logger", logger},
              {"machine-config", machine_config_json(config)},
              {"metrics", metrics},
              {"mmds-config", nullptr},
              {"network-interfaces", network_interfaces_json(config)},
              {"vsock", vsock},
              {"entropy", entropy_json(config)}};
}

void apply_full_config(VmConfig& config, const json& document) {
  JsonFields f(document, "configuration");
  auto boot = f.optional<json>("boot-source");
  auto machine = f.optional<json>("machine-config");
  auto drives = f.optional<json>("drives");
  auto logger = f.optional<json>("logger");
  auto metrics = f.optional<json>("metrics");
  auto entropy = f.optional<json>("entropy");
  auto network = f.optional<json>("network-interfaces");
  auto console = f.optional<json>("console");
  auto vsock = f.optional<json>("vsock");
  for (const char* unsupported_now : {"balloon", "mmds-config", "cpu-config"}) {
    if (f.optional<json>(unsupported_now))
      throw FieldError("configuration", unsupported_now, "is not supported by Kiln yet");
  }
  f.reject_unknown();
  if (!boot) throw FieldError("configuration", "boot-source", "missing (required)");
  apply_boot_source(config, *boot);
  if (machine) apply_machine_config(config, *machine, false);
  if (drives) {
    if (!drives->is_array()) throw FieldError("configuration", "drives", "must be an array");
    for (size_t i = 0; i < drives->size(); ++i) {
      const json& d = (*drives)[i];
      const std::string what = "drives[" + std::to_string(i) + "]";
      const std::string id = d.is_object() && d.contains("drive_id") && d["drive_id"].is_string()
                                 ? d["drive_id"].get<std::string>()
                                 : "";
      apply_drive(config, id, d, what);
    }
  }
  if (network) apply_network_interfaces(config, *network);
  if (logger) apply_logger(config, *logger);
  if (metrics) apply_metrics(config, *metrics);
  if (entropy) apply_entropy(config, *entropy);
  if (console) apply_console(config, *console);
  if (vsock) apply_vsock(config, *vsock);
}

}  // namespace kiln::api
