#include "api/vm_json.h"

#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "api/fs_json.h"
#include "api/json_fields.h"

namespace kiln::api {

namespace {

using nlohmann::json;

constexpr uint32_t kMaxVcpus = 1024;
constexpr uint64_t kMinMemoryMib = 16;
constexpr uint64_t kMaxMemoryMib = uint64_t{1} << 20;
constexpr size_t kMaxIdLength = 64;

const char* const kLogLevels[] = {"Error", "Warning", "Info", "Debug", "Trace", "Off"};

bool equals_ignoring_case(const std::string& a, const char* b) {
  return std::equal(a.begin(), a.end(), b, b + std::strlen(b), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

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
  if (mem && *mem == 0)
    throw FieldError("machine-config", "mem_size_mib",
                     "The memory size (MiB) is either 0, or not a multiple of the configured page "
                     "size. Kiln needs between 16 and 1048576");
  if (mem && (*mem < kMinMemoryMib || *mem > kMaxMemoryMib))
    throw FieldError("machine-config", "mem_size_mib", "must be between 16 and 1048576");
  if (smt && *smt) throw FieldError("machine-config", "smt", "true is not supported by Kiln");
  if (cpu_template && *cpu_template != "None") {
    const std::initializer_list<const char*> kTemplates = {"C3",  "T2",   "T2S", "T2CL",
                                                           "T2A", "V1N1", "None"};
    if (std::none_of(kTemplates.begin(), kTemplates.end(),
                     [&](const char* t) { return *cpu_template == t; }))
      throw unknown_variant("machine-config", "cpu_template", *cpu_template, kTemplates);
    throw FieldError("machine-config", "cpu_template",
                     "\"" + *cpu_template + "\" is not supported by Kiln, only \"None\"");
  }
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

std::optional<std::string> resource_id_problem(const std::string& id) {
  const bool valid =
      !id.empty() && id.size() <= kMaxIdLength && std::all_of(id.begin(), id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
      });
  if (valid) return std::nullopt;
  return "must be 1 to 64 letters, digits or underscores (API Resource IDs can only contain "
         "alphanumeric characters and underscores)";
}

void check_resource_id(const std::string& what, const std::string& field, const std::string& id) {
  if (auto problem = resource_id_problem(id)) throw FieldError(what, field, *problem);
}

void check_path_id(const std::string& what, const std::string& field, const std::string& body_id,
                   const std::string& path_id) {
  if (body_id != path_id)
    throw FieldError(what, field,
                     "The id from the path does not match the id from the body! (\"" + body_id +
                         "\" in the body, \"" + path_id + "\" in the path)");
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
  auto partuuid = f.optional<std::string>("partuuid");
  auto limiter = f.optional<json>("rate_limiter");
  auto socket = f.optional<std::string>("socket");
  f.reject_unknown();
  check_path_id(what, "drive_id", drive_id, id);
  check_resource_id(what, "drive_id", drive_id);
  if (socket) throw FieldError(what, "socket", "vhost-user drives are not supported by Kiln");
  if (!path) throw FieldError::shape(what, "path_on_host", "missing field `path_on_host`");
  if (path->empty()) throw FieldError(what, "path_on_host", "is empty");
  CacheType cache_type = CacheType::kUnsafe;
  if (cache && *cache == "Writeback") {
    cache_type = CacheType::kWriteback;
  } else if (cache && *cache != "Unsafe") {
    throw unknown_variant(what, "cache_type", *cache, {"Unsafe", "Writeback"});
  }
  if (engine && *engine == "Async")
    throw FieldError(what, "io_engine",
                     "\"Async\" (io_uring) is not supported by Kiln, which does synchronous I/O; "
                     "use \"Sync\" or leave it out");
  if (engine && *engine != "Sync")
    throw unknown_variant(what, "io_engine", *engine, {"Sync", "Async"});
  if (partuuid)
    throw FieldError(what, "partuuid",
                     "is not supported by Kiln (the root drive is always root=/dev/vda); leave it "
                     "out");
  if (limiter) refuse_rate_limiter(*limiter, what + ".rate_limiter", "drives");

  DriveConfig drive{*path, read_only.value_or(false), drive_id, is_root, cache_type};
  auto existing = std::find_if(config.drives.begin(), config.drives.end(),
                               [&](const DriveConfig& d) { return d.id == id; });
  if (is_root) {
    auto other_root = std::find_if(config.drives.begin(), config.drives.end(),
                                   [&](const DriveConfig& d) { return d.is_root && d.id != id; });
    if (other_root != config.drives.end())
      throw FieldError(what, "is_root_device",
                       "A root block device already exists! (drive \"" + other_root->id +
                           "\" is the root device)");
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
  auto module = f.optional<std::string>("module");
  f.reject_unknown();
  // Level names are case-insensitive, as in Firecracker.
  const char* const* known = std::end(kLogLevels);
  if (level)
    known = std::find_if(std::begin(kLogLevels), std::end(kLogLevels),
                         [&](const char* l) { return equals_ignoring_case(*level, l); });
  if (level && known == std::end(kLogLevels))
    throw unknown_variant("logger", "level", *level,
                          {"Error", "Warning", "Info", "Debug", "Trace", "Off"});
  if (module)
    throw FieldError("logger", "module",
                     "filtering the log by module is not supported by Kiln; leave it out");
  if (path) config.logger.path = *path;
  if (level) config.logger.level = *known;
  if (show_level) config.logger.show_level = *show_level;
  if (show_origin) config.logger.show_log_origin = *show_origin;
}

void apply_metrics(VmConfig& config, const json& body) {
  JsonFields f(body, "metrics");
  auto path = f.required<std::string>("metrics_path");
  auto emit_id = f.optional<bool>("emit_id");
  auto properties = f.optional<json>("properties");
  f.reject_unknown();
  if (path.empty()) throw FieldError("metrics", "metrics_path", "is empty");
  MetricsConfig metrics{path, emit_id.value_or(false), {}};
  if (properties) {
    if (!properties->is_object())
      throw FieldError::shape("metrics", "properties",
                              "invalid type, expected a map of strings to strings", true);
    for (auto it = properties->begin(); it != properties->end(); ++it) {
      if (!it->is_string())
        throw FieldError::shape("metrics", "properties",
                                "invalid type: the value of \"" + it.key() +
                                    "\" is not a string, expected a map of strings to strings",
                                true);
      metrics.properties[it.key()] = it->get<std::string>();
    }
  }
  config.metrics = std::move(metrics);
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
  auto burst = f.optional<uint64_t>("one_time_burst");
  b.refill_time_ms = f.required<uint64_t>("refill_time");
  f.reject_unknown();
  const std::string max_tokens = std::to_string(TokenBucketConfig::kMaxTokens);
  if (b.size == 0 || b.size > TokenBucketConfig::kMaxTokens)
    throw FieldError(what, "size", "must be between 1 and " + max_tokens + " (2^63-1)");
  if (burst && *burst > TokenBucketConfig::kMaxTokens)
    throw FieldError(what, "one_time_burst", "must be at most " + max_tokens + " (2^63-1)");
  if (b.refill_time_ms == 0 || b.refill_time_ms > TokenBucketConfig::kMaxRefillTimeMs)
    throw FieldError(what, "refill_time",
                     "must be between 1 and " +
                         std::to_string(TokenBucketConfig::kMaxRefillTimeMs) +
                         " (ms, about 292 years)");
  b.one_time_burst = burst.value_or(0);
  b.one_time_burst_set = burst.has_value();
  return b;
}

json token_bucket_json(const TokenBucketConfig& b) {
  return {{"size", b.size},
          {"one_time_burst", b.one_time_burst_set ? json(b.one_time_burst) : json(nullptr)},
          {"refill_time", b.refill_time_ms}};
}

RateLimiterConfig parse_rate_limiter(const json& body, const std::string& what) {
  JsonFields f(body, what);
  auto bandwidth = f.optional<json>("bandwidth");
  auto ops = f.optional<json>("ops");
  f.reject_unknown();
  RateLimiterConfig limiter;
  if (bandwidth) limiter.bandwidth = parse_token_bucket(*bandwidth, what + ".bandwidth");
  if (ops) limiter.ops = parse_token_bucket(*ops, what + ".ops");
  return limiter;
}

void refuse_rate_limiter(const json& body, const std::string& what, const std::string& device) {
  const RateLimiterConfig limiter = parse_rate_limiter(body, what);
  if (limiter.bandwidth || limiter.ops) {
    const auto dot = what.rfind('.');
    throw FieldError(what.substr(0, dot), what.substr(dot + 1),
                     "rate limiting " + device +
                         " is not supported by Kiln yet (only the entropy device has a rate "
                         "limiter); leave it out or send {}");
  }
}

void apply_entropy(VmConfig& config, const json& body) {
  JsonFields f(body, "entropy");
  auto limiter = f.optional<json>("rate_limiter");
  f.reject_unknown();
  EntropyConfig entropy;
  if (limiter) {
    const RateLimiterConfig parsed = parse_rate_limiter(*limiter, "entropy.rate_limiter");
    if (parsed.ops)
      throw FieldError("entropy.rate_limiter", "ops",
                       "is not supported for entropy; limit bytes with \"bandwidth\"");
    entropy.bandwidth = parsed.bandwidth;
  }
  config.entropy = entropy;
}

json entropy_json(const VmConfig& config) {
  if (!config.entropy) return nullptr;
  json limiter = nullptr;
  if (config.entropy->bandwidth)
    limiter = {{"bandwidth", token_bucket_json(*config.entropy->bandwidth)}, {"ops", nullptr}};
  return {{"rate_limiter", limiter}};
}

void apply_serial(VmConfig& config, const json& body) {
  JsonFields f(body, "serial");
  auto path = f.optional<std::string>("serial_out_path");
  auto limiter = f.optional<json>("rate_limiter");
  f.reject_unknown();
  if (limiter) {
    parse_token_bucket(*limiter, "serial.rate_limiter");  // a bad bucket is named first
    throw FieldError("serial", "rate_limiter",
                     "rate limiting the serial output is not supported by Kiln; leave it out");
  }
  config.serial_out_path = path.value_or("");
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

json drive_json(const DriveConfig& d) {
  // Firecracker's BlockDeviceConfig, every key present: what Kiln refuses is always null.
  return {{"drive_id", d.id},
          {"partuuid", nullptr},
          {"is_root_device", d.is_root},
          {"cache_type", d.cache_type == CacheType::kWriteback ? "Writeback" : "Unsafe"},
          {"is_read_only", d.read_only},
          {"path_on_host", d.path},
          {"rate_limiter", nullptr},
          {"io_engine", "Sync"},
          {"socket", nullptr}};
}

json vm_config_json(const VmConfig& config) {
  json drives = json::array();
  for (const DriveConfig& d : config.drives) drives.push_back(drive_json(d));
  json boot = nullptr;
  if (!config.kernel_path.empty())
    boot = {{"kernel_image_path", config.kernel_path},
            {"initrd_path", config.initrd_path.empty() ? json(nullptr) : json(config.initrd_path)},
            {"boot_args", config.cmdline}};
  json logger = nullptr;
  if (!config.logger.path.empty())
    logger = {{"log_path", config.logger.path},
              {"level", config.logger.level},
              {"show_level", config.logger.show_level},
              {"show_log_origin", config.logger.show_log_origin},
              {"module", nullptr}};
  json metrics = nullptr;
  if (!config.metrics.path.empty()) {
    metrics = {{"metrics_path", config.metrics.path}, {"emit_id", config.metrics.emit_id}};
    if (!config.metrics.properties.empty()) metrics["properties"] = config.metrics.properties;
  }
  json vsock = nullptr;
  if (config.vsock) {
    vsock = {{"guest_cid", config.vsock->guest_cid}, {"uds_path", config.vsock->uds_path}};
    if (!config.vsock->vsock_id.empty()) vsock["vsock_id"] = config.vsock->vsock_id;
  }
  json full{{"balloon", nullptr},
            {"drives", drives},
            {"boot-source", boot},
            {"cpu-config", nullptr},
            {"logger", logger},
            {"machine-config", machine_config_json(config)},
            {"metrics", metrics},
            {"mmds-config", nullptr},
            {"network-interfaces", network_interfaces_json(config)},
            {"vsock", vsock},
            {"entropy", entropy_json(config)},
            {"memory-hotplug", nullptr},
            {"pmem", json::array()}};
  // Kiln's own key, only when used: without shares the object is exactly Firecracker's.
  if (!config.fs.empty()) full["fs"] = fs_json(config);
  return full;
}

std::vector<std::string> deprecated_fields(const std::string& object, const json& body) {
  std::vector<std::string> fields;
  const char* deprecated = object == "machine-config" ? "cpu_template"
                           : object == "vsock"        ? "vsock_id"
                                                      : nullptr;
  if (deprecated && body.is_object() && body.contains(deprecated)) fields.push_back(deprecated);
  return fields;
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
  auto fs = f.optional<json>("fs");
  for (const char* unsupported_now : {"balloon", "mmds-config", "cpu-config"}) {
    if (f.optional<json>(unsupported_now))
      throw FieldError("configuration", unsupported_now, "is not supported by Kiln yet");
  }
  f.reject_unknown();
  if (!boot) throw FieldError::shape("configuration", "boot-source", "missing field `boot-source`");
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
  if (fs) apply_fs_list(config, *fs);
}

}  // namespace kiln::api
