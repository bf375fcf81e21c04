// The one check of a share (fs_problem) serves every front end: --fs builds the same object, the
// config files' "fs" arrays and PUT /fs/{fs_id} are read here.
#include "api/fs_json.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "api/json_fields.h"
#include "api/utf8.h"
#include "api/vm_json.h"
#include "devices/virtio/queue.h"

namespace kiln::api {

namespace {

using nlohmann::json;

constexpr const char* kCacheNames[] = {"never", "auto", "always"};  // FsCacheMode's order

}  // namespace

std::optional<FsProblem> fs_problem(const VmConfig& config, const FsConfig& fs) {
  if (fs.tag.empty() || fs.tag.size() > FsConfig::kMaxTagBytes)
    return FsProblem{"tag", "must be 1 to " + std::to_string(FsConfig::kMaxTagBytes) +
                                " bytes (what `mount -t virtiofs TAG DIR` names), not " +
                                std::to_string(fs.tag.size())};
  if (invalid_utf8_at(fs.tag))
    return FsProblem{"tag", "is not valid UTF-8 (the guest reads the tag as text)"};
  if (std::any_of(fs.tag.begin(), fs.tag.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
    return FsProblem{"tag", "must not contain NUL or control characters"};
  if (fs.num_request_queues < 1 || fs.num_request_queues > FsConfig::kMaxRequestQueues)
    return FsProblem{"num_request_queues",
                     "must be between 1 and " + std::to_string(FsConfig::kMaxRequestQueues)};
  if (fs.path.empty()) return FsProblem{"path", "is empty"};
  struct stat st {};
  if (::stat(fs.path.c_str(), &st) != 0)
    return FsProblem{"path", valid_utf8(fs.path) + ": " + std::strerror(errno) +
                                 " (the shared directory must exist)"};
  if (!S_ISDIR(st.st_mode)) return FsProblem{"path", valid_utf8(fs.path) + " is not a directory"};
  for (const FsConfig& other : config.fs) {
    if (other.fs_id == fs.fs_id) continue;  // the share being replaced
    if (other.tag == fs.tag)
      return FsProblem{"tag", "\"" + fs.tag + "\" is already the tag of share \"" + other.fs_id +
                                  "\" (tags must be unique)"};
  }
  return std::nullopt;
}

void apply_fs(VmConfig& config, const std::string& id, const json& body, const std::string& what) {
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
  check_path_id(what, "fs_id", fs.fs_id, id);
  check_resource_id(what, "fs_id", fs.fs_id);
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
  // Clamped, not truncated: anything past the limit is refused by fs_problem.
  if (queues)
    fs.num_request_queues = static_cast<uint32_t>(std::min<uint64_t>(*queues, UINT32_MAX));
  if (auto problem = fs_problem(config, fs))
    throw FieldError(what, problem->field, problem->problem);
  auto existing = std::find_if(config.fs.begin(), config.fs.end(),
                               [&](const FsConfig& other) { return other.fs_id == id; });
  if (existing != config.fs.end()) {
    *existing = fs;
  } else {
    config.fs.push_back(fs);
  }
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
    apply_fs(config, id, s, what);
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
