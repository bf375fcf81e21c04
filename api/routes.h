// The API's routes: an HTTP request (method, path, JSON body) becomes one VmmCommand, or an
// error reply (404 unknown path, 405 wrong method, 400 bad JSON / unknown action).
#pragma once

#include <nlohmann/json.hpp>

#include <variant>

#include "api/http/http.h"
#include "vmm/command.h"

namespace kiln::api {

// A command for the controller, or the reply to send at once.
std::variant<VmmCommand, VmmReply> route(const HttpRequest& request);

// The reply's JSON body (null: none): {"fault_message": ...} for an error, else its data.
nlohmann::json reply_json(const VmmReply& reply);
HttpResponse to_http(const VmmReply& reply);

}  // namespace kiln::api
