#include "api/json_fields.h"

#include <cstdint>
#include <limits>

namespace kiln::api {

JsonFields::JsonFields(const nlohmann::json& object, std::string what)
    : object_(object), what_(std::move(what)) {
  if (!object_.is_object()) throw FieldError(what_, "", "expected a JSON object");
}

void JsonFields::reject_unknown() const {
  for (auto it = object_.begin(); it != object_.end(); ++it)
    if (!seen_.count(it.key())) throw FieldError(what_, it.key(), "unknown field");
}

template <>
bool JsonFields::convert<bool>(const nlohmann::json& v, const std::string& key) const {
  if (!v.is_boolean()) throw FieldError(what_, key, "must be a boolean");
  return v.get<bool>();
}

template <>
std::string JsonFields::convert<std::string>(const nlohmann::json& v,
                                             const std::string& key) const {
  if (!v.is_string()) throw FieldError(what_, key, "must be a string");
  return v.get<std::string>();
}

template <>
uint64_t JsonFields::convert<uint64_t>(const nlohmann::json& v, const std::string& key) const {
  if (!v.is_number_unsigned()) throw FieldError(what_, key, "must be a non-negative integer");
  return v.get<uint64_t>();
}

template <>
uint32_t JsonFields::convert<uint32_t>(const nlohmann::json& v, const std::string& key) const {
  const uint64_t value = convert<uint64_t>(v, key);
  if (value > std::numeric_limits<uint32_t>::max()) throw FieldError(what_, key, "is out of range");
  return static_cast<uint32_t>(value);
}

template <>
nlohmann::json JsonFields::convert<nlohmann::json>(const nlohmann::json& v,
                                                   const std::string&) const {
  return v;
}

}  // namespace kiln::api
