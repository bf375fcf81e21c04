// Firecracker's JSON objects <-> Kiln's VmConfig. Used by the HTTP API (one object per request)
// and by --config-file / --config (a whole configuration). All validation of those objects is
// here: errors are FieldError (a UsageError) naming the object and field.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "vmm/vm_config.h"

namespace kiln::api {

// machine-config: PUT replaces (vcpu_count and mem_size_mib required), PATCH updates.
void apply_machine_config(VmConfig& config, const nlohmann::json& body, bool patch);
void apply_boot_source(VmConfig& config, const nlohmann::json& body);
// PUT /drives/{id}: adds or replaces drive `id` (the body's drive_id must match). The root
// device is kept first.
void apply_drive(VmConfig& config, const std::string& id, const nlohmann::json& body,
                 const std::string& what = "drive");
// PUT /network-interfaces/{id}: adds or replaces interface `id` (the body's iface_id must match);
// a TAP name or MAC used by another interface is refused.
void apply_network_interface(VmConfig& config, const std::string& id, const nlohmann::json& body,
                             const std::string& what = "network-interface");
// PATCH /network-interfaces/{id}: checks the body (iface_id; rate limiters: {} or absent, Kiln
// has no net rate limiting) and that the interface exists.
void check_network_interface_patch(const VmConfig& config, const std::string& id,
                                   const nlohmann::json& body);
// The config file's "network-interfaces" array (ids must be unique).
void apply_network_interfaces(VmConfig& config, const nlohmann::json& list);
nlohmann::json network_interfaces_json(const VmConfig& config);
void apply_logger(VmConfig& config, const nlohmann::json& body);
void apply_metrics(VmConfig& config, const nlohmann::json& body);
void apply_entropy(VmConfig& config, const nlohmann::json& body);
void apply_serial(VmConfig& config, const nlohmann::json& body);
// Kiln's own "console" object: {"mode": "serial" | "virtio" | "none"}. With virtio, a command
// line still at Kiln's default gets console=hvc0 instead of console=ttyS0.
void apply_console(VmConfig& config, const nlohmann::json& body);
// PUT /vsock (Firecracker's Vsock object: guest_cid, uds_path, deprecated vsock_id).
void apply_vsock(VmConfig& config, const nlohmann::json& body);
// What is wrong with a vsock configuration: the field ("guest_cid", "uds_path") and the
// problem, or nullopt. Shared by the API, the config files and --vsock.
struct VsockProblem {
  std::string field;
  std::string problem;
};
std::optional<VsockProblem> vsock_problem(const VsockConfig& vsock);

// Firecracker's TokenBucket object ({size, one_time_burst, refill_time}) <-> TokenBucketConfig.
// Every field is bounded (TokenBucketConfig's limits); a bad one is a FieldError naming it.
TokenBucketConfig parse_token_bucket(const nlohmann::json& body, const std::string& what);
nlohmann::json token_bucket_json(const TokenBucketConfig& bucket);
// Firecracker's RateLimiter object ({bandwidth, ops}); {} limits nothing.
RateLimiterConfig parse_rate_limiter(const nlohmann::json& body, const std::string& what);
// For devices without a rate limiter: checks the object, accepts {} and refuses any bucket
// (FieldError on "<what>" naming `device`), so that a limit is never accepted and ignored.
void refuse_rate_limiter(const nlohmann::json& body, const std::string& what,
                         const std::string& device);

// An API resource id (drive_id, iface_id): 1 to 64 letters, digits or '_'. Shared by the API,
// the config files and the --disk/--net flags: the problem, or nullopt; or a FieldError.
std::optional<std::string> resource_id_problem(const std::string& id);
void check_resource_id(const std::string& what, const std::string& field, const std::string& id);
// The body's id must be the path's ({drive_id} / {iface_id}).
void check_path_id(const std::string& what, const std::string& field, const std::string& body_id,
                   const std::string& path_id);
// The deprecated fields the body uses (Firecracker answers them with "Deprecation: true"):
// machine-config's cpu_template, vsock's vsock_id.
std::vector<std::string> deprecated_fields(const std::string& object, const nlohmann::json& body);

nlohmann::json machine_config_json(const VmConfig& config);
// GET /vm/config: Firecracker's full-configuration shape.
nlohmann::json vm_config_json(const VmConfig& config);

// A whole configuration (Firecracker's --config-file JSON) applied on top of `config`.
void apply_full_config(VmConfig& config, const nlohmann::json& document);

}  // namespace kiln::api
