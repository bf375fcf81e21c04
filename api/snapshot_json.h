// The snapshot API's bodies (Firecracker's SnapshotCreateParams and SnapshotLoadParams) and
// the text form a snapshot keeps its VM's configuration in (the JSON of GET /vm/config, read
// back as a --config-file is).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "vmm/command.h"
#include "vmm/controller.h"

namespace kiln::api {

// PUT /snapshot/create. Throws FieldError naming the field.
request::CreateSnapshot parse_snapshot_create(const nlohmann::json& body);
// PUT /snapshot/load: exactly one of mem_backend (File or Uffd) and (deprecated)
// mem_file_path; huge_pages other than None or Snapshot is refused. Throws FieldError naming
// the field.
request::LoadSnapshot parse_snapshot_load(const nlohmann::json& body);
// The deprecated fields a load body uses (mem_file_path, enable_diff_snapshots).
std::vector<std::string> snapshot_load_deprecated_fields(const nlohmann::json& body);

ConfigCodec snapshot_config_codec();

}  // namespace kiln::api
