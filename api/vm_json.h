// Firecracker's JSON objects <-> Kiln's typed configuration objects (vmm/vm_config_ops.h). Used
// by the HTTP API (one object per request, api/routes.cc) and by --config-file / --config (a
// whole configuration). Reading an object checks its shape (types, missing and unknown fields,
// enum values) and the values it allows on its own (the validators of vmm/vm_config_ops.h);
// errors are FieldError (a UsageError) naming the object and field. What needs the
// configuration the object goes into is checked when it is applied.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "api/json_fields.h"
#include "vmm/command.h"
#include "vmm/vm_config.h"
#include "vmm/vm_config_ops.h"

namespace kiln::api {

// Throws FieldError(object, problem->field, problem->problem) when there is a problem.
void check(const std::string& object, const std::optional<FieldProblem>& problem);

// machine-config: PUT needs vcpu_count and mem_size_mib, PATCH does not.
MachineConfigUpdate parse_machine_config(const nlohmann::json& body, bool patch);
// A huge_pages name (None, Transparent, 2M), or a FieldError on "<object>: huge_pages".
HugePages parse_huge_pages(const std::string& name, const std::string& object);
BootSourceConfig parse_boot_source(const nlohmann::json& body);
// PUT /drives/{id}: the body's drive_id must be `path_id`.
DriveConfig parse_drive(const nlohmann::json& body, const std::string& path_id,
                        const std::string& what = "drive");
// PATCH /drives/{id}: path_on_host and/or an empty rate_limiter.
request::PatchDrive parse_drive_patch(const nlohmann::json& body, const std::string& path_id);
// PUT /network-interfaces/{id}: the body's iface_id must be `path_id`.
NetConfig parse_network_interface(const nlohmann::json& body, const std::string& path_id,
                                  const std::string& what = "network-interface");
// PATCH /network-interfaces/{id}: iface_id; rate limiters {} or absent (Kiln has none).
request::PatchNetworkInterface parse_network_interface_patch(const nlohmann::json& body,
                                                             const std::string& path_id);
// A guest_mac value, or a FieldError on "<what>: guest_mac".
MacAddress parse_guest_mac(const std::string& text, const std::string& what);
nlohmann::json network_interfaces_json(const VmConfig& config);
LoggerUpdate parse_logger(const nlohmann::json& body);
MetricsConfig parse_metrics(const nlohmann::json& body);
EntropyConfig parse_entropy(const nlohmann::json& body);
std::string parse_serial(const nlohmann::json& body);  // serial_out_path
// Kiln's own "console" object: {"mode": "serial" | "virtio" | "none"}.
ConsoleMode parse_console(const nlohmann::json& body);
// Firecracker's Vsock object: guest_cid, uds_path, deprecated vsock_id.
VsockConfig parse_vsock(const nlohmann::json& body);

// Firecracker's TokenBucket object ({size, one_time_burst, refill_time}) <-> TokenBucketConfig.
// Every field is bounded (validate(TokenBucketConfig)); a bad one is a FieldError naming it.
TokenBucketConfig parse_token_bucket(const nlohmann::json& body, const std::string& what);
nlohmann::json token_bucket_json(const TokenBucketConfig& bucket);
// Firecracker's RateLimiter object ({bandwidth, ops}); {} limits nothing.
RateLimiterConfig parse_rate_limiter(const nlohmann::json& body, const std::string& what);
// A drive's or network interface's RateLimiter (PUT): a bucket with size or refill_time 0, or
// null, is none, as in Firecracker.
RateLimiterConfig parse_io_rate_limiter(const nlohmann::json& body, const std::string& what);
// The same object in a PATCH: buckets not given are kept, those with size or refill_time 0
// removed, the others replaced.
RateLimiterUpdate parse_rate_limiter_update(const nlohmann::json& body, const std::string& what);
// null when nothing limits, else {bandwidth, ops} with null for a missing bucket.
nlohmann::json rate_limiter_json(const RateLimiterConfig& limiter);

// A FieldError for an API resource id (drive_id, iface_id) that is not one.
void check_resource_id(const std::string& what, const std::string& field, const std::string& id);
// The body's id must be the path's ({drive_id} / {iface_id}).
void check_path_id(const std::string& what, const std::string& field, const std::string& body_id,
                   const std::string& path_id);
// The deprecated fields the body uses (Firecracker answers them with "Deprecation: true"):
// machine-config's cpu_template, vsock's vsock_id.
std::vector<std::string> deprecated_fields(const std::string& object, const nlohmann::json& body);

nlohmann::json machine_config_json(const MachineConfigInfo& machine);
// GET /vm/config: Firecracker's full-configuration shape.
nlohmann::json vm_config_json(const VmConfig& config);

// A whole configuration (Firecracker's --config-file JSON) applied on top of `config`, object
// by object through the same functions as the API's requests.
void apply_full_config(VmConfig& config, const nlohmann::json& document);

}  // namespace kiln::api
