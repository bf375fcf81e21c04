// Kiln's virtio-fs share objects (PUT /fs/{fs_id}, the config files' "fs" / [[fs]], --fs) <->
// VmConfig::fs. Errors are FieldError (a UsageError) naming the object and field.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "vmm/vm_config.h"

namespace kiln::api {

// PUT /fs/{fs_id}: adds or replaces share `id` (the body's fs_id must match).
void apply_fs(VmConfig& config, const std::string& id, const nlohmann::json& body,
              const std::string& what = "fs");
// The config files' "fs" array (ids must be unique).
void apply_fs_list(VmConfig& config, const nlohmann::json& list);
nlohmann::json fs_json(const VmConfig& config);

// What is wrong with share `fs` in `config`: the field and the problem, or nullopt. Tag 1 to 36
// bytes of text, unique among the other shares; path an existing directory; num_request_queues
// in range. The one check every front end uses (through apply_fs).
struct FsProblem {
  std::string field;
  std::string problem;
};
std::optional<FsProblem> fs_problem(const VmConfig& config, const FsConfig& fs);

}  // namespace kiln::api
