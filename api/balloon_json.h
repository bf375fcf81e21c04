// Firecracker's balloon objects (PUT/PATCH/GET /balloon, GET/PATCH /balloon/statistics, the
// config files' "balloon") <-> BalloonConfig and the requests. Errors are FieldError naming the
// field; amount_mib against the guest's memory is validate(BalloonConfig, memory) (the
// controller's).
#pragma once

#include <nlohmann/json.hpp>

#include "vmm/command.h"
#include "vmm/vm_config.h"

namespace kiln::api {

BalloonConfig parse_balloon(const nlohmann::json& body);
request::PatchBalloon parse_balloon_patch(const nlohmann::json& body);
request::PatchBalloonStats parse_balloon_stats_patch(const nlohmann::json& body);
nlohmann::json balloon_json(const BalloonConfig& balloon);
nlohmann::json balloon_stats_json(const BalloonStatsInfo& stats);

}  // namespace kiln::api
