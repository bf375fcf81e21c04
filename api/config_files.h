// Whole-VM configuration files, both mapped onto VmConfig through Firecracker's JSON objects
// (api/vm_json.h), so every front end validates the same way:
//  - Firecracker's --config-file JSON ("boot-source", "machine-config", "drives", ...);
//  - Kiln's TOML, the same objects as tables: [boot-source], [machine-config], [[drives]].
// Errors are kiln::UsageError naming the file, the line (TOML) and the key.
#pragma once

#include <string>

#include "vmm/vm_config.h"

namespace kiln::api {

void apply_json_config_file(VmConfig& config, const std::string& path);
void apply_toml_config_file(VmConfig& config, const std::string& path);

}  // namespace kiln::api
