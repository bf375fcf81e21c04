#include "api/routes.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <type_traits>

#include "api/balloon_json.h"
#include "api/fs_json.h"
#include "api/json_fields.h"
#include "api/nesting.h"
#include "api/snapshot_json.h"
#include "api/utf8.h"
#include "api/vm_json.h"

namespace kiln::api {

namespace {

using nlohmann::json;

// The requests of the API, by what they are called on; each reads its body (if any) into the
// typed request. `id` is {drive_id} / {iface_id} / {fs_id} from the path.
enum class Op {
  kGetInstanceInfo,
  kGetVersion,
  kGetVmConfig,
  kGetMachineConfig,
  kPutMachineConfig,
  kPatchMachineConfig,
  kPutBootSource,
  kPutDrive,
  kPatchDrive,
  kPutNetworkInterface,
  kPatchNetworkInterface,
  kActions,
  kPatchVm,
  kPutLogger,
  kPutMetrics,
  kPutEntropy,
  kPutSerial,
  kPutVsock,
  kPutFs,  // Kiln's own
  kCreateSnapshot,
  kLoadSnapshot,
  kPutBalloon,
  kPatchBalloon,
  kGetBalloon,
  kGetBalloonStats,
  kPatchBalloonStats,
};

// Method -> request, for each fixed path.
const std::map<std::string, std::map<std::string, Op>>& fixed_routes() {
  static const std::map<std::string, std::map<std::string, Op>> routes = {
      {"/", {{"GET", Op::kGetInstanceInfo}}},
      {"/version", {{"GET", Op::kGetVersion}}},
      {"/vm/config", {{"GET", Op::kGetVmConfig}}},
      {"/machine-config",
       {{"GET", Op::kGetMachineConfig},
        {"PUT", Op::kPutMachineConfig},
        {"PATCH", Op::kPatchMachineConfig}}},
      {"/boot-source", {{"PUT", Op::kPutBootSource}}},
      {"/actions", {{"PUT", Op::kActions}}},
      {"/vm", {{"PATCH", Op::kPatchVm}}},
      {"/logger", {{"PUT", Op::kPutLogger}}},
      {"/metrics", {{"PUT", Op::kPutMetrics}}},
      {"/entropy", {{"PUT", Op::kPutEntropy}}},
      {"/serial", {{"PUT", Op::kPutSerial}}},
      {"/vsock", {{"PUT", Op::kPutVsock}}},
      {"/snapshot/create", {{"PUT", Op::kCreateSnapshot}}},
      {"/snapshot/load", {{"PUT", Op::kLoadSnapshot}}},
      {"/balloon",
       {{"PUT", Op::kPutBalloon}, {"PATCH", Op::kPatchBalloon}, {"GET", Op::kGetBalloon}}},
      {"/balloon/statistics", {{"GET", Op::kGetBalloonStats}, {"PATCH", Op::kPatchBalloonStats}}},
  };
  return routes;
}

// PUT /actions' action_type.
Request parse_action(const json& body) {
  JsonFields f(body, "actions");
  const auto type = f.required<std::string>("action_type");
  f.reject_unknown();
  if (type == "InstanceStart") return request::InstanceStart{};
  if (type == "SendCtrlAltDel") return request::SendCtrlAltDel{};
  if (type == "FlushMetrics") return request::FlushMetrics{};
  throw unknown_variant("actions", "action_type", type,
                        {"FlushMetrics", "InstanceStart", "SendCtrlAltDel"});
}

// PATCH /vm's state.
Request parse_vm_state(const json& body) {
  JsonFields f(body, "vm");
  const auto state = f.required<std::string>("state");
  f.reject_unknown();
  if (state == "Paused") return request::Pause{};
  if (state == "Resumed") return request::Resume{};
  throw unknown_variant("vm", "state", state, {"Paused", "Resumed"});
}

// The typed request for `op` with its body. Throws FieldError for a body it refuses.
Request parse_request(Op op, const std::string& id, const json& body) {
  namespace rq = request;
  switch (op) {
    case Op::kGetInstanceInfo:
      return rq::GetInstanceInfo{};
    case Op::kGetVersion:
      return rq::GetVersion{};
    case Op::kGetVmConfig:
      return rq::GetVmConfig{};
    case Op::kGetMachineConfig:
      return rq::GetMachineConfig{};
    case Op::kPutMachineConfig:
      return rq::PutMachineConfig{parse_machine_config(body, false)};
    case Op::kPatchMachineConfig:
      return rq::PatchMachineConfig{parse_machine_config(body, true)};
    case Op::kPutBootSource:
      return rq::PutBootSource{parse_boot_source(body)};
    case Op::kPutDrive:
      return rq::PutDrive{parse_drive(body, id)};
    case Op::kPatchDrive:
      return parse_drive_patch(body, id);
    case Op::kPutNetworkInterface:
      return rq::PutNetworkInterface{parse_network_interface(body, id)};
    case Op::kPatchNetworkInterface:
      return parse_network_interface_patch(body, id);
    case Op::kActions:
      return parse_action(body);
    case Op::kPatchVm:
      return parse_vm_state(body);
    case Op::kPutLogger:
      return rq::PutLogger{parse_logger(body)};
    case Op::kPutMetrics:
      return rq::PutMetrics{parse_metrics(body)};
    case Op::kPutEntropy:
      return rq::PutEntropy{parse_entropy(body)};
    case Op::kPutSerial:
      return rq::PutSerial{parse_serial(body)};
    case Op::kPutVsock:
      return rq::PutVsock{parse_vsock(body)};
    case Op::kPutFs:
      return rq::PutFs{parse_fs(body, id)};
    case Op::kCreateSnapshot:
      return parse_snapshot_create(body);
    case Op::kLoadSnapshot:
      return parse_snapshot_load(body);
    case Op::kPutBalloon:
      return rq::PutBalloon{parse_balloon(body)};
    case Op::kPatchBalloon:
      return parse_balloon_patch(body);
    case Op::kGetBalloon:
      return rq::GetBalloon{};
    case Op::kGetBalloonStats:
      return rq::GetBalloonStats{};
    case Op::kPatchBalloonStats:
      return parse_balloon_stats_patch(body);
  }
  throw UsageError("unsupported request");
}

bool needs_body(const std::string& method) {
  return method == "PUT" || method == "PATCH";
}

// Firecracker's words ("Invalid request method and/or path"), with Kiln's status codes.
VmmReply method_not_allowed(const HttpRequest& r) {
  return VmmReply::fault(405, "Invalid request method and/or path: " + r.method + " " + r.path +
                                  " (the method is not allowed on this path)");
}

}  // namespace

std::variant<VmmCommand, VmmReply> route(const HttpRequest& r) {
  Op op = Op::kGetInstanceInfo;
  std::string id;
  // Paths with an id: prefix -> {PUT, PATCH} requests.
  struct IdRoute {
    const char* prefix;
    Op put, patch;
    bool has_patch = true;
  };
  static const IdRoute kIdRoutes[] = {
      {"/drives/", Op::kPutDrive, Op::kPatchDrive},
      {"/network-interfaces/", Op::kPutNetworkInterface, Op::kPatchNetworkInterface},
      {"/fs/", Op::kPutFs, Op::kPutFs, false},
  };
  const IdRoute* id_route = nullptr;
  for (const IdRoute& candidate : kIdRoutes) {
    const std::string prefix = candidate.prefix;
    if (r.path.rfind(prefix, 0) == 0 && r.path.size() > prefix.size() &&
        r.path.find('/', prefix.size()) == std::string::npos) {
      id_route = &candidate;
      id = r.path.substr(prefix.size());
    }
  }
  if (id_route) {
    if (r.method == "PUT")
      op = id_route->put;
    else if (r.method == "PATCH" && id_route->has_patch)
      op = id_route->patch;
    else
      return method_not_allowed(r);
  } else {
    auto path = fixed_routes().find(r.path);
    if (path == fixed_routes().end())
      return VmmReply::fault(404, "Invalid request method and/or path: " + r.method + " " + r.path +
                                      " (no API resource at this path)");
    auto method = path->second.find(r.method);
    if (method == path->second.end()) return method_not_allowed(r);
    op = method->second;
  }

  if (r.method == "GET" && !r.body.empty())
    return VmmReply::fault(400, "GET request cannot have a body.");
  json body = nullptr;
  if (needs_body(r.method)) {
    if (r.body.empty())
      return VmmReply::fault(400, "Empty " + r.method + " request. (it needs a JSON body)");
    // Checked before parsing: dump, copy and compare recurse through nested values.
    if (json_nesting_exceeded(r.body))
      return VmmReply::fault(
          400, "the body is nested more than " + std::to_string(kMaxNesting) + " levels deep");
    if (auto at = invalid_utf8_at(r.body))
      return VmmReply::fault(400, fmt::format("the body is not valid UTF-8 (byte {:#04x} at "
                                              "offset {})",
                                              static_cast<unsigned char>(r.body[*at]), *at));
    try {
      body = json::parse(r.body);
    } catch (const json::exception& e) {  // parse_error, or out_of_range: a number too large
      return VmmReply::fault(400,
                             std::string("An error occurred when deserializing the json body of a "
                                         "request: the body is not valid JSON: ") +
                                 e.what());
    }
  }
  VmmCommand command;
  // Firecracker's log words: "Put", "/drives/rootfs", the body as read.
  command.method = r.method;
  std::transform(command.method.begin() + 1, command.method.end(), command.method.begin() + 1,
                 [](unsigned char c) { return std::tolower(c); });
  command.path = r.path;
  if (!body.is_null()) command.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  if (op == Op::kPutMachineConfig || op == Op::kPatchMachineConfig)
    command.deprecated = deprecated_fields("machine-config", body);
  else if (op == Op::kPutVsock)
    command.deprecated = deprecated_fields("vsock", body);
  else if (op == Op::kLoadSnapshot)
    command.deprecated = snapshot_load_deprecated_fields(body);
  const bool after_boot = op == Op::kPatchDrive || op == Op::kPatchNetworkInterface ||
                          op == Op::kCreateSnapshot || op == Op::kGetBalloonStats;
  try {
    command.request = parse_request(op, id, body);
  } catch (const FieldError& e) {
    // Actions and VM states are answered at once; a configuration body goes to the controller,
    // which answers it after its state checks (and logs and counts it).
    if (op == Op::kActions || op == Op::kPatchVm)
      return VmmReply::fault(400, api_fault_message(e, r.body));
    command.request =
        request::Invalid{api_fault_message(e, r.body), e.is_shape_error(), after_boot};
  } catch (const UsageError& e) {  // any other refusal, answered as the controller would
    command.request = request::Invalid{e.what(), false, after_boot};
  }
  return command;
}

json reply_json(const VmmReply& reply) {
  if (reply.status >= 400) return {{"fault_message", reply.fault_message}};
  return std::visit(
      [](const auto& body) -> json {
        using T = std::decay_t<decltype(body)>;
        if constexpr (std::is_same_v<T, InstanceInfo>) {
          return {{"app_name", body.app_name},
                  {"id", body.id},
                  {"state", body.state},
                  {"vmm_version", body.vmm_version}};
        } else if constexpr (std::is_same_v<T, VersionInfo>) {
          return {{"firecracker_version", body.version}};
        } else if constexpr (std::is_same_v<T, VmConfig>) {
          return vm_config_json(body);
        } else if constexpr (std::is_same_v<T, MachineConfigInfo>) {
          return machine_config_json(body);
        } else if constexpr (std::is_same_v<T, BalloonConfig>) {
          return balloon_json(body);
        } else if constexpr (std::is_same_v<T, BalloonStatsInfo>) {
          return balloon_stats_json(body);
        } else {
          return nullptr;
        }
      },
      reply.body);
}

HttpResponse to_http(const VmmReply& reply) {
  HttpResponse response;
  response.status = reply.status;
  response.headers = reply.headers;
  // Strings Kiln accepts as bytes (host paths) may not be UTF-8: they are replaced by U+FFFD
  // rather than failing the reply.
  const json body = reply_json(reply);
  if (!body.is_null()) response.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return response;
}

}  // namespace kiln::api
