// Kiln's virtio-fs share objects (PUT /fs/{fs_id}, the config files' "fs" / [[fs]]) <->
// FsConfig. Reading checks the object's shape and validate(FsConfig); add_fs
// (vmm/vm_config_ops.h) checks the directory and the other shares. Errors are FieldError.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "vmm/vm_config.h"

namespace kiln::api {

// PUT /fs/{fs_id}: the body's fs_id must be `path_id`.
FsConfig parse_fs(const nlohmann::json& body, const std::string& path_id,
                  const std::string& what = "fs");
// The config files' "fs" array (ids must be unique), added to `config` with add_fs.
void apply_fs_list(VmConfig& config, const nlohmann::json& list);
nlohmann::json fs_json(const VmConfig& config);

}  // namespace kiln::api
