#include "api/snapshot_json.h"

#include "api/json_fields.h"
#include "api/vm_json.h"

namespace kiln::api {

using nlohmann::json;

request::CreateSnapshot parse_snapshot_create(const json& body) {
  JsonFields f(body, "snapshot-create");
  request::CreateSnapshot c;
  c.snapshot_path = f.required<std::string>("snapshot_path");
  c.mem_file_path = f.required<std::string>("mem_file_path");
  const std::string type = f.optional<std::string>("snapshot_type").value_or("Full");
  f.reject_unknown();
  if (type == "Diff")
    c.type = request::SnapshotType::kDiff;
  else if (type != "Full")
    throw unknown_variant("snapshot-create", "snapshot_type", type, {"Full", "Diff"});
  if (c.snapshot_path.empty())
    throw FieldError("snapshot-create", "snapshot_path", "must not be empty");
  if (c.mem_file_path.empty())
    throw FieldError("snapshot-create", "mem_file_path", "must not be empty");
  if (c.snapshot_path == c.mem_file_path)
    throw FieldError("snapshot-create", "mem_file_path", "must differ from snapshot_path");
  return c;
}

request::LoadSnapshot parse_snapshot_load(const json& body) {
  const std::string what = "snapshot-load";
  JsonFields f(body, what);
  request::LoadSnapshot l;
  l.snapshot_path = f.required<std::string>("snapshot_path");
  const auto mem_file = f.optional<std::string>("mem_file_path");
  const auto backend = f.optional<json>("mem_backend");
  const auto track = f.optional<bool>("track_dirty_pages");
  const auto enable_diff = f.optional<bool>("enable_diff_snapshots");
  l.resume_vm = f.optional<bool>("resume_vm").value_or(false);
  l.clock_realtime = f.optional<bool>("clock_realtime").value_or(false);
  const auto overrides = f.optional<json>("network_overrides");
  const auto vsock = f.optional<json>("vsock_override");
  const auto drives = f.optional<json>("drive_overrides");  // Kiln's own
  const auto shares = f.optional<json>("fs_overrides");     // Kiln's own
  const auto huge = f.optional<std::string>("huge_pages");
  f.reject_unknown();
  if (l.snapshot_path.empty()) throw FieldError(what, "snapshot_path", "must not be empty");
  if (mem_file && backend)
    throw FieldError(what, "mem_backend", "mem_file_path and mem_backend cannot both be given");
  if (!mem_file && !backend)
    throw FieldError::shape(what, "mem_backend", "missing field `mem_backend`");
  if (backend) {
    JsonFields b(*backend, "mem_backend");
    const auto type = b.required<std::string>("backend_type");
    l.mem_file_path = b.required<std::string>("backend_path");
    b.reject_unknown();
    if (type != "File" && type != "Uffd")
      throw unknown_variant("mem_backend", "backend_type", type, {"File", "Uffd"});
    l.uffd = type == "Uffd";
  } else {
    l.mem_file_path = *mem_file;
  }
  if (l.mem_file_path.empty())
    throw FieldError(what, backend ? "mem_backend.backend_path" : "mem_file_path",
                     "must not be empty");
  l.track_dirty_pages = track.value_or(false) || enable_diff.value_or(false);
  // Each override list: an array of objects of two strings, the second not empty.
  auto pairs = [&](const std::optional<json>& list, const char* name, const char* key,
                   const char* value, auto add) {
    if (!list) return;
    if (!list->is_array()) throw FieldError(what, name, "must be an array");
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string where = std::string(name) + "[" + std::to_string(i) + "]";
      JsonFields o((*list)[i], where);
      const std::string k = o.required<std::string>(key), v = o.required<std::string>(value);
      o.reject_unknown();
      if (v.empty()) throw FieldError(where, value, "must not be empty");
      add(where, k, v);
    }
  };
  pairs(overrides, "network_overrides", "iface_id", "host_dev_name",
        [&](const std::string& where, const std::string& id, const std::string& tap) {
          if (tap.size() > 15)
            throw FieldError(where, "host_dev_name", "must be 1 to 15 bytes (a TAP's name)");
          l.network_overrides.push_back({id, tap});
        });
  pairs(drives, "drive_overrides", "drive_id", "path_on_host",
        [&](const std::string&, const std::string& id, const std::string& path) {
          l.drive_overrides.push_back({id, path});
        });
  pairs(shares, "fs_overrides", "fs_id", "path",
        [&](const std::string&, const std::string& id, const std::string& path) {
          l.fs_overrides.push_back({id, path});
        });
  if (vsock) {
    JsonFields v(*vsock, "vsock_override");
    l.vsock_uds_path = v.required<std::string>("uds_path");
    v.reject_unknown();
    if (l.vsock_uds_path->empty())
      throw FieldError("vsock_override", "uds_path", "must not be empty");
  }
  if (huge && *huge != "Snapshot") {
    if (*huge != "None") {
      if (*huge == "Transparent" || *huge == "2M")
        throw FieldError(what, "huge_pages",
                         *huge +
                             ": a restored guest's memory is 4 KiB pages in this Kiln; "
                             "use None");
      throw unknown_variant(what, "huge_pages", *huge, {"Snapshot", "None", "Transparent", "2M"});
    }
    l.huge_pages = HugePages::kNone;
  }
  return l;
}

std::vector<std::string> snapshot_load_deprecated_fields(const json& body) {
  std::vector<std::string> fields;
  if (!body.is_object()) return fields;
  for (const char* name : {"mem_file_path", "enable_diff_snapshots"})
    if (body.contains(name)) fields.push_back(name);
  return fields;
}

namespace {

// Sets `field` of the item of array `list` whose `id_key` is `id`; UsageError `missing` if the
// document has none.
void override_item(json& document, const char* list, const char* id_key, const std::string& id,
                   const char* field, const std::string& value, const std::string& missing) {
  auto items = document.find(list);
  if (items != document.end() && items->is_array())
    for (json& item : *items)
      if (item.is_object() && item.value(id_key, json()) == id) {
        item[field] = value;
        return;
      }
  throw UsageError(missing);
}

// A load's overrides on the snapshot's configuration, as GET /vm/config's JSON.
void apply_overrides(json& document, const request::LoadSnapshot& l) {
  if (!document.is_object()) return;  // apply_full_config says what is wrong
  for (const request::NetworkOverride& o : l.network_overrides)
    override_item(document, "network-interfaces", "iface_id", o.iface_id, "host_dev_name",
                  o.host_dev_name,
                  "network_overrides: the snapshot has no interface \"" + o.iface_id + "\"");
  for (const request::DriveOverride& o : l.drive_overrides)
    override_item(document, "drives", "drive_id", o.drive_id, "path_on_host", o.path_on_host,
                  "drive_overrides: the snapshot has no drive \"" + o.drive_id + "\"");
  for (const request::FsOverride& o : l.fs_overrides)
    override_item(document, "fs", "fs_id", o.fs_id, "path", o.path,
                  "fs_overrides: the snapshot has no virtio-fs share \"" + o.fs_id + "\"");
  if (l.vsock_uds_path) {
    auto vsock = document.find("vsock");
    if (vsock == document.end() || !vsock->is_object())
      throw UsageError("vsock_override: the snapshot has no vsock device");
    (*vsock)["uds_path"] = *l.vsock_uds_path;
  }
}

}  // namespace

ConfigCodec snapshot_config_codec() {
  ConfigCodec codec;
  codec.encode = [](const VmConfig& config) { return vm_config_json(config).dump(); };
  codec.decode = [](const std::string& text, const request::LoadSnapshot& load) {
    json document;
    try {
      document = json::parse(text);
    } catch (const json::exception& e) {
      throw UsageError(std::string("the snapshot's configuration is not JSON: ") + e.what());
    }
    apply_overrides(document, load);
    VmConfig config;
    try {
      apply_full_config(config, document);
    } catch (const UsageError& e) {
      throw UsageError(std::string("the snapshot's configuration: ") + e.what());
    }
    return config;
  };
  return codec;
}

}  // namespace kiln::api
