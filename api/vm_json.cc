#include "api/vm_json.h"

#include <algorithm>
#include <cstring>

#include "api/balloon_json.h"
#include "api/fs_json.h"
#include "api/json_fields.h"

namespace kiln::api {

namespace {

using nlohmann::json;

const char* const kLogLevels[] = {"Error", "Warning", "Info", "Debug", "Trace", "Off"};

bool equals_ignoring_case(const std::string& a, const char* b) {
  return std::equal(a.begin(), a.end(), b, b + std::strlen(b), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) ==
           std::tolower(static_cast<unsigned char>(y));
  });
}

}  // namespace

void check(const std::string& object, const std::optional<FieldProblem>& problem) {
  if (problem) throw FieldError(object, problem->field, problem->problem);
}

HugePages parse_huge_pages(const std::string& name, const std::string& object) {
  auto backing = huge_pages_from_name(name);
  if (!backing) throw FieldError(object, "huge_pages", "must be one of None, Transparent, 2M");
  return *backing;
}

MachineConfigUpdate parse_machine_config(const json& body, bool patch) {
  JsonFields f(body, "machine-config");
  MachineConfigUpdate u;
  u.vcpus = patch ? f.optional<uint32_t>("vcpu_count") : f.required<uint32_t>("vcpu_count");
  u.memory_mib =
      patch ? f.optional<uint64_t>("mem_size_mib") : f.required<uint64_t>("mem_size_mib");
  u.smt = f.optional<bool>("smt");
  u.track_dirty_pages = f.optional<bool>("track_dirty_pages");
  auto cpu_template = f.optional<std::string>("cpu_template");
  auto huge_pages = f.optional<std::string>("huge_pages");
  f.reject_unknown();
  check("machine-config", validate(u));
  if (cpu_template && *cpu_template != "None") {
    const std::initializer_list<const char*> kTemplates = {"C3",  "T2",   "T2S", "T2CL",
                                                           "T2A", "V1N1", "None"};
    if (std::none_of(kTemplates.begin(), kTemplates.end(),
                     [&](const char* t) { return *cpu_template == t; }))
      throw unknown_variant("machine-config", "cpu_template", *cpu_template, kTemplates);
    throw FieldError("machine-config", "cpu_template",
                     "\"" + *cpu_template + "\" is not supported by Kiln, only \"None\"");
  }
  if (huge_pages) u.huge_pages = parse_huge_pages(*huge_pages, "machine-config");
  return u;
}

BootSourceConfig parse_boot_source(const json& body) {
  JsonFields f(body, "boot-source");
  BootSourceConfig boot;
  boot.kernel_path = f.required<std::string>("kernel_image_path");
  boot.cmdline = f.optional<std::string>("boot_args");
  boot.initrd_path = f.optional<std::string>("initrd_path").value_or("");
  f.reject_unknown();
  check("boot-source", validate(boot));
  return boot;
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

DriveConfig parse_drive(const json& body, const std::string& path_id, const std::string& what) {
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
  check_path_id(what, "drive_id", drive_id, path_id);
  check_resource_id(what, "drive_id", drive_id);  // the API needs an id (validate: if given)
  if (socket) throw FieldError(what, "socket", "vhost-user drives are not supported by Kiln");
  if (!path) throw FieldError::shape(what, "path_on_host", "missing field `path_on_host`");
  DriveConfig drive{*path, read_only.value_or(false), drive_id, is_root, CacheType::kUnsafe};
  check(what, validate(drive));
  if (cache && *cache == "Writeback") {
    drive.cache_type = CacheType::kWriteback;
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
  if (limiter && !limiter->is_null())
    drive.rate_limiter = parse_io_rate_limiter(*limiter, what + ".rate_limiter");
  return drive;
}

request::PatchDrive parse_drive_patch(const json& body, const std::string& path_id) {
  JsonFields f(body, "drive");
  auto drive_id = f.required<std::string>("drive_id");
  auto path = f.optional<std::string>("path_on_host");
  auto limiter = f.optional<json>("rate_limiter");
  f.reject_unknown();
  check_path_id("drive", "drive_id", drive_id, path_id);
  request::PatchDrive patch{drive_id, path, std::nullopt};
  if (limiter && !limiter->is_null())
    patch.rate_limiter = parse_rate_limiter_update(*limiter, "drive.rate_limiter");
  return patch;
}

LoggerUpdate parse_logger(const json& body) {
  JsonFields f(body, "logger");
  LoggerUpdate u;
  u.path = f.optional<std::string>("log_path");
  auto level = f.optional<std::string>("level");
  u.show_level = f.optional<bool>("show_level");
  u.show_log_origin = f.optional<bool>("show_log_origin");
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
  if (level) u.level = *known;
  return u;
}

MetricsConfig parse_metrics(const json& body) {
  JsonFields f(body, "metrics");
  auto path = f.required<std::string>("metrics_path");
  auto emit_id = f.optional<bool>("emit_id");
  auto properties = f.optional<json>("properties");
  f.reject_unknown();
  MetricsConfig metrics{path, emit_id.value_or(false), {}};
  check("metrics", validate(metrics));
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
  return metrics;
}

ConsoleMode parse_console(const json& body) {
  JsonFields f(body, "console");
  auto mode = f.required<std::string>("mode");
  f.reject_unknown();
  if (mode == "serial") return ConsoleMode::kSerial;
  if (mode == "virtio") return ConsoleMode::kVirtio;
  if (mode == "none") return ConsoleMode::kNone;
  throw FieldError("console", "mode", "must be \"serial\", \"virtio\" or \"none\"");
}

namespace {

// A TokenBucket object's fields, before its bounds are checked.
TokenBucketConfig read_token_bucket(const json& body, const std::string& what) {
  JsonFields f(body, what);
  TokenBucketConfig b;
  b.size = f.required<uint64_t>("size");
  auto burst = f.optional<uint64_t>("one_time_burst");
  b.refill_time_ms = f.required<uint64_t>("refill_time");
  f.reject_unknown();
  b.one_time_burst = burst.value_or(0);
  b.one_time_burst_set = burst.has_value();
  return b;
}

// A drive's or interface's bucket: size or refill_time 0 is no bucket (Firecracker's rule, the
// way its PATCH removes one); otherwise bounded as every bucket.
std::optional<TokenBucketConfig> parse_io_bucket(const json& body, const std::string& what) {
  TokenBucketConfig b = read_token_bucket(body, what);
  if (b.size == 0 || b.refill_time_ms == 0) return std::nullopt;
  check(what, validate(b));
  return b;
}

}  // namespace

TokenBucketConfig parse_token_bucket(const json& body, const std::string& what) {
  TokenBucketConfig b = read_token_bucket(body, what);
  check(what, validate(b));
  return b;
}

RateLimiterUpdate parse_rate_limiter_update(const json& body, const std::string& what) {
  JsonFields f(body, what);
  auto bandwidth = f.optional<json>("bandwidth");
  auto ops = f.optional<json>("ops");
  f.reject_unknown();
  RateLimiterUpdate u;
  // A null bucket is one not given, as serde reads an Option.
  if (bandwidth && !bandwidth->is_null())
    u.bandwidth = parse_io_bucket(*bandwidth, what + ".bandwidth");
  if (ops && !ops->is_null()) u.ops = parse_io_bucket(*ops, what + ".ops");
  return u;
}

RateLimiterConfig parse_io_rate_limiter(const json& body, const std::string& what) {
  return parse_rate_limiter_update(body, what).applied_to({});
}

json rate_limiter_json(const RateLimiterConfig& limiter) {
  if (!limiter.limits()) return nullptr;
  return {{"bandwidth", limiter.bandwidth ? token_bucket_json(*limiter.bandwidth) : json(nullptr)},
          {"ops", limiter.ops ? token_bucket_json(*limiter.ops) : json(nullptr)}};
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

EntropyConfig parse_entropy(const json& body) {
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
  return entropy;
}

json entropy_json(const VmConfig& config) {
  if (!config.entropy) return nullptr;
  json limiter = nullptr;
  if (config.entropy->bandwidth)
    limiter = {{"bandwidth", token_bucket_json(*config.entropy->bandwidth)}, {"ops", nullptr}};
  return {{"rate_limiter", limiter}};
}

std::string parse_serial(const json& body) {
  JsonFields f(body, "serial");
  auto path = f.optional<std::string>("serial_out_path");
  auto limiter = f.optional<json>("rate_limiter");
  f.reject_unknown();
  if (limiter) {
    parse_token_bucket(*limiter, "serial.rate_limiter");  // a bad bucket is named first
    throw FieldError("serial", "rate_limiter",
                     "rate limiting the serial output is not supported by Kiln; leave it out");
  }
  return path.value_or("");
}

VsockConfig parse_vsock(const json& body) {
  JsonFields f(body, "vsock");
  VsockConfig vsock;
  vsock.guest_cid = f.required<uint64_t>("guest_cid");
  vsock.uds_path = f.required<std::string>("uds_path");
  vsock.vsock_id = f.optional<std::string>("vsock_id").value_or("");
  f.reject_unknown();
  check("vsock", validate(vsock));
  return vsock;
}

json machine_config_json(const MachineConfigInfo& m) {
  return json{{"vcpu_count", m.vcpus},
              {"mem_size_mib", m.memory_mib},
              {"smt", m.smt},
              {"track_dirty_pages", m.track_dirty_pages},
              {"huge_pages", std::string(huge_pages_name(m.huge_pages))}};
}

json drive_json(const DriveConfig& d) {
  // Firecracker's BlockDeviceConfig, every key present: what Kiln refuses is always null.
  return {{"drive_id", d.id},
          {"partuuid", nullptr},
          {"is_root_device", d.is_root},
          {"cache_type", d.cache_type == CacheType::kWriteback ? "Writeback" : "Unsafe"},
          {"is_read_only", d.read_only},
          {"path_on_host", d.path},
          {"rate_limiter", rate_limiter_json(d.rate_limiter)},
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
  json full{{"balloon", config.balloon ? balloon_json(*config.balloon) : json(nullptr)},
            {"drives", drives},
            {"boot-source", boot},
            {"cpu-config", nullptr},
            {"logger", logger},
            {"machine-config", machine_config_json({config.vcpus, config.memory_mib, config.smt,
                                                    config.track_dirty_pages, config.huge_pages})},
            {"metrics", metrics},
            {"mmds-config", nullptr},
            {"network-interfaces", network_interfaces_json(config)},
            {"vsock", vsock},
            {"entropy", entropy_json(config)},
            {"memory-hotplug", nullptr},
            {"pmem", json::array()}};
  // Kiln's own keys, only when used: without them the object is exactly Firecracker's.
  if (!config.fs.empty()) full["fs"] = fs_json(config);
  if (config.console == ConsoleMode::kVirtio) full["console"] = {{"mode", "virtio"}};
  if (config.console == ConsoleMode::kNone) full["console"] = {{"mode", "none"}};
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
  auto balloon = f.optional<json>("balloon");
  for (const char* unsupported_now : {"mmds-config", "cpu-config", "memory-hotplug"}) {
    if (f.optional<json>(unsupported_now))
      throw FieldError("configuration", unsupported_now, "is not supported by Kiln yet");
  }
  // GET /vm/config shows "pmem": [] (Firecracker's shape); a device in it is not supported.
  if (auto pmem = f.optional<json>("pmem"); pmem && !(pmem->is_array() && pmem->empty()))
    throw FieldError("configuration", "pmem", "is not supported by Kiln yet");
  f.reject_unknown();
  if (!boot) throw FieldError::shape("configuration", "boot-source", "missing field `boot-source`");
  check("boot-source", apply_boot_source(config, parse_boot_source(*boot)));
  if (machine)
    check("machine-config",
          apply_machine_config(config, parse_machine_config(*machine, false), false));
  if (drives) {
    if (!drives->is_array()) throw FieldError("configuration", "drives", "must be an array");
    for (size_t i = 0; i < drives->size(); ++i) {
      const json& d = (*drives)[i];
      const std::string what = "drives[" + std::to_string(i) + "]";
      const std::string id = d.is_object() && d.contains("drive_id") && d["drive_id"].is_string()
                                 ? d["drive_id"].get<std::string>()
                                 : "";
      check(what, add_drive(config, parse_drive(d, id, what)));
    }
  }
  if (network) {
    if (!network->is_array())
      throw FieldError("configuration", "network-interfaces", "must be an array");
    for (size_t i = 0; i < network->size(); ++i) {
      const json& n = (*network)[i];
      const std::string id = n.is_object() && n.contains("iface_id") && n["iface_id"].is_string()
                                 ? n["iface_id"].get<std::string>()
                                 : "";
      const std::string what = "network-interfaces[" + std::to_string(i) + "]";
      if (std::any_of(config.nets.begin(), config.nets.end(),
                      [&](const NetConfig& other) { return other.iface_id == id; }))
        throw FieldError(what, "iface_id", "\"" + id + "\" appears twice");
      check(what, add_network_interface(config, parse_network_interface(n, id, what)));
    }
  }
  if (logger) apply_logger(config, parse_logger(*logger));
  if (metrics) check("metrics", set_metrics(config, parse_metrics(*metrics)));
  if (entropy) set_entropy(config, parse_entropy(*entropy));
  if (console) set_console(config, parse_console(*console));
  if (vsock) check("vsock", set_vsock(config, parse_vsock(*vsock)));
  if (fs) apply_fs_list(config, *fs);
  if (balloon && !balloon->is_null()) {
    const BalloonConfig b = parse_balloon(*balloon);
    check("balloon", validate(b, config.memory_mib));
    config.balloon = b;
  }
}

}  // namespace kiln::api
