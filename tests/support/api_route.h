// Routes an API request as the HTTP server does (api::route), for tests of request bodies.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "api/routes.h"
#include "vmm/command.h"

namespace kiln::test {

// The typed request T that METHOD PATH with `body` becomes, or (empty) the fault message it is
// refused with.
template <typename T>
std::pair<std::optional<T>, std::string> route_as(const std::string& method,
                                                  const std::string& path,
                                                  const std::string& body) {
  api::HttpRequest r;
  r.method = method;
  r.path = path;
  r.body = body;
  auto result = api::route(r);
  const auto* command = std::get_if<VmmCommand>(&result);
  if (!command) return {std::nullopt, "not a command"};
  if (const auto* invalid = std::get_if<request::Invalid>(&command->request))
    return {std::nullopt, invalid->fault_message};
  if (const auto* t = std::get_if<T>(&command->request)) return {*t, ""};
  return {std::nullopt, "another request"};
}

}  // namespace kiln::test
