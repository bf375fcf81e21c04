#include "api/fs_json.h"

#include <algorithm>
#include <cstdint>

#include "api/json_fields.h"
#include "api/vm_json.h"
#include "devices/virtio/queue.h"
#include "vmm/vm_config_ops.h"

namespace kiln::api {

namespace {

using nlohmann::json;

constexpr const char* kCacheNames[] = {"never", "auto", "always"};  // FsCacheMode's order

}  // namespace

FsConfig parse_fs(const json& body, const std::string& path_id, const std::string& what) {
  JsonFields f(body, what);
  FsConfig fs;
  fs.fs_id = f.required<std::string>("fs_id");
  fs.tag = f.required<std::string>("tag");
  auto path = f.optional<std::string>("path");
  fs.read_only = f.optional<bool>("read_only").value_or(false);
  auto cache = f.optional<std::string>("cache");
  fs.allow_setid_and_devices = f.optional<bool>("allow_setid_and_devices").value_or(false);
  auto queues = f.optional<uint64_t>("num_request_queues");
  auto queue_size = f.optional<uint64_t>("queue_size");
  auto socket = f.optional<std::string>("socket");
  f.reject_unknown();
  check_path_id(what, "fs_id", fs.fs_id, path_id);
  if (socket)
    throw FieldError(what, "socket",
                     "vhost-user-fs (an external virtiofsd) is not supported: Kiln serves the "
                     "directory itself; give \"path\" instead");
  if (!path) throw FieldError::shape(what, "path", "missing field `path`");
  fs.path = *path;
  if (queue_size)
    throw FieldError(what, "queue_size",
                     "cannot be set in Kiln (its virtio-fs queues have " +
                         std::to_string(virtio::Queue::kMaxSize) + " entries); leave it out");
  if (cache) {
    const auto* known = std::find(std::begin(kCacheNames), std::end(kCacheNames), *cache);
    if (known == std::end(kCacheNames))
      throw unknown_variant(what, "cache", *cache, {"never", "auto", "always"});
    fs.cache = static_cast<FsCacheMode>(known - std::begin(kCacheNames));
  }
  // Clamped, not truncated: anything past the limit is refused by validate().
  if (queues)
    fs.num_request_queues = static_cast<uint32_t>(std::min<uint64_t>(*queues, UINT32_MAX));
  check(what, validate(fs));
  return fs;
}

void apply_fs_list(VmConfig& config, const json& list) {
  if (!list.is_array()) throw FieldError("configuration", "fs", "must be an array");
  for (size_t i = 0; i < list.size(); ++i) {
    const json& s = list[i];
    const std::string id = s.is_object() && s.contains("fs_id") && s["fs_id"].is_string()
                               ? s["fs_id"].get<std::string>()
                               : "";
    const std::string what = "fs[" + std::to_string(i) + "]";
    if (std::any_of(config.fs.begin(), config.fs.end(),
                    [&](const FsConfig& other) { return other.fs_id == id; }))
      throw FieldError(what, "fs_id", "\"" + id + "\" appears twice");
    check(what, add_fs(config, parse_fs(s, id, what)));
  }
}

json fs_json(const VmConfig& config) {
  json shares = json::array();
  for (const FsConfig& s : config.fs)
    shares.push_back({{"fs_id", s.fs_id},
                      {"tag", s.tag},
                      {"path", s.path},
                      {"read_only", s.read_only},
                      {"cache", kCacheNames[static_cast<size_t>(s.cache)]},
                      {"allow_setid_and_devices", s.allow_setid_and_devices},
                      {"num_request_queues", s.num_request_queues}});
  return shares;
}

}  // namespace kiln::api
