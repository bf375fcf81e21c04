#include "api/routes.h"

#include <fmt/format.h>

#include <map>

#include "api/json_fields.h"
#include "api/nesting.h"
#include "api/utf8.h"

namespace kiln::api {

namespace {

using K = VmmCommand::Kind;
using nlohmann::json;

// Method -> command kind, for each fixed path.
const std::map<std::string, std::map<std::string, K>>& fixed_routes() {
  static const std::map<std::string, std::map<std::string, K>> routes = {
      {"/", {{"GET", K::kGetInstanceInfo}}},
      {"/version", {{"GET", K::kGetVersion}}},
      {"/vm/config", {{"GET", K::kGetVmConfig}}},
      {"/machine-config",
       {{"GET", K::kGetMachineConfig},
        {"PUT", K::kPutMachineConfig},
        {"PATCH", K::kPatchMachineConfig}}},
      {"/boot-source", {{"PUT", K::kPutBootSource}}},
      {"/actions", {{"PUT", K::kInstanceStart}}},  // refined by action_type below
      {"/vm", {{"PATCH", K::kPauseVm}}},           // refined by state below
      {"/logger", {{"PUT", K::kPutLogger}}},
      {"/metrics", {{"PUT", K::kPutMetrics}}},
      {"/entropy", {{"PUT", K::kPutEntropy}}},
      {"/serial", {{"PUT", K::kPutSerial}}},
      {"/vsock", {{"PUT", K::kPutVsock}}},
  };
  return routes;
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
  VmmCommand command{K::kGetInstanceInfo, "", nullptr, ""};
  // Paths with an id: prefix -> {PUT, PATCH} kinds.
  struct IdRoute {
    const char* prefix;
    K put, patch;
    bool has_patch = true;
  };
  static const IdRoute kIdRoutes[] = {
      {"/drives/", K::kPutDrive, K::kPatchDrive},
      {"/network-interfaces/", K::kPutNetworkInterface, K::kPatchNetworkInterface},
      {"/fs/", K::kPutFs, K::kPutFs, false},
  };
  const IdRoute* id_route = nullptr;
  for (const IdRoute& candidate : kIdRoutes) {
    const std::string prefix = candidate.prefix;
    if (r.path.rfind(prefix, 0) == 0 && r.path.size() > prefix.size() &&
        r.path.find('/', prefix.size()) == std::string::npos) {
      id_route = &candidate;
      command.id = r.path.substr(prefix.size());
    }
  }
  if (id_route) {
    if (r.method == "PUT")
      command.kind = id_route->put;
    else if (r.method == "PATCH" && id_route->has_patch)
      command.kind = id_route->patch;
    else
      return method_not_allowed(r);
  } else {
    auto path = fixed_routes().find(r.path);
    if (path == fixed_routes().end())
      return VmmReply::fault(404, "Invalid request method and/or path: " + r.method + " " + r.path +
                                      " (no API resource at this path)");
    auto method = path->second.find(r.method);
    if (method == path->second.end()) return method_not_allowed(r);
    command.kind = method->second;
  }

  if (r.method == "GET" && !r.body.empty())
    return VmmReply::fault(400, "GET request cannot have a body.");
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
      command.body = json::parse(r.body);
    } catch (const json::exception& e) {  // parse_error, or out_of_range: a number too large
      return VmmReply::fault(400,
                             std::string("An error occurred when deserializing the json body of a "
                                         "request: the body is not valid JSON: ") +
                                 e.what());
    }
    command.text = r.body;
  }
  try {
    if (r.path == "/actions") {
      JsonFields f(command.body, "actions");
      const auto type = f.required<std::string>("action_type");
      f.reject_unknown();
      if (type == "InstanceStart")
        command.kind = K::kInstanceStart;
      else if (type == "SendCtrlAltDel")
        command.kind = K::kSendCtrlAltDel;
      else if (type == "FlushMetrics")
        command.kind = K::kFlushMetrics;
      else
        throw unknown_variant("actions", "action_type", type,
                              {"FlushMetrics", "InstanceStart", "SendCtrlAltDel"});
    } else if (r.path == "/vm") {
      JsonFields f(command.body, "vm");
      const auto state = f.required<std::string>("state");
      f.reject_unknown();
      if (state == "Paused")
        command.kind = K::kPauseVm;
      else if (state == "Resumed")
        command.kind = K::kResumeVm;
      else
        throw unknown_variant("vm", "state", state, {"Paused", "Resumed"});
    }
  } catch (const FieldError& e) {
    return VmmReply::fault(400, api_fault_message(e, r.body));
  }
  return command;
}

HttpResponse to_http(const VmmReply& reply) {
  HttpResponse response;
  response.status = reply.status;
  response.headers = reply.headers;
  // Strings Kiln accepts as bytes (host paths) may not be UTF-8: they are replaced by U+FFFD
  // rather than failing the reply.
  if (!reply.body.is_null())
    response.body = reply.body.dump(-1, ' ', false, json::error_handler_t::replace);
  return response;
}

}  // namespace kiln::api
