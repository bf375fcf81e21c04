#include "api/json_fields.h"

#include <algorithm>
#include <cstdint>
#include <limits>

namespace kiln::api {

namespace {

// How a JSON value is described in a type error: "string \"two\"", "integer `-2`",
// "floating point `1.5`", "boolean `true`", "null", "map", "sequence".
std::string describe(const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::string:
      return "string " + v.dump();
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      return "integer `" + v.dump() + "`";
    case nlohmann::json::value_t::number_float:
      return "floating point `" + v.dump() + "`";
    case nlohmann::json::value_t::boolean:
      return "boolean `" + v.dump() + "`";
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::object:
      return "map";
    case nlohmann::json::value_t::array:
      return "sequence";
    default:
      return "value";
  }
}

}  // namespace

std::string api_fault_message(const FieldError& e, const std::string& text) {
  if (!e.is_shape_error()) return e.what();
  std::string position;
  // A field missing from the body's own object: where that object ends (its closing brace),
  // as serde reports it. Nested objects ("entropy.rate_limiter") get no position.
  const size_t end = text.find_last_not_of(" \t\r\n");
  if (e.problem().rfind("missing field", 0) == 0 &&
      e.object().find_first_of(".[") == std::string::npos && end != std::string::npos &&
      text[end] == '}') {
    const size_t line_start = text.rfind('\n', end);
    const size_t line = 1 + std::count(text.begin(), text.begin() + end, '\n');
    const size_t column = line_start == std::string::npos ? end + 1 : end - line_start;
    position = " at line " + std::to_string(line) + " column " + std::to_string(column) + ".";
  }
  return "An error occurred when deserializing the json body of a request: " + e.problem() +
         position + " (" + e.object() + (e.field().empty() ? "" : ": " + e.field()) + ")";
}

FieldError unknown_variant(const std::string& object, const std::string& field,
                           const std::string& value, std::initializer_list<const char*> variants) {
  std::string expected;
  size_t i = 0;
  for (const char* v : variants) {
    expected += std::string(i == 0 ? "`" : i + 1 == variants.size() ? " or `" : ", `") + v + "`";
    ++i;
  }
  return FieldError::shape(object, field,
                           "unknown variant `" + value + "`, expected " +
                               (variants.size() > 2 ? "one of " : "") + expected,
                           true);
}

JsonFields::JsonFields(const nlohmann::json& object, std::string what)
    : object_(object), what_(std::move(what)) {
  if (!object_.is_object())
    throw FieldError::shape(what_, "",
                            "invalid type: " + describe(object_) + ", expected an object");
}

void JsonFields::reject_unknown() const {
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (seen_.count(it.key())) continue;
    std::string expected;
    for (const std::string& known : seen_)
      expected += (expected.empty() ? "`" : ", `") + known + "`";
    throw FieldError::shape(
        what_, it.key(),
        "unknown field `" + it.key() + "`" +
            (expected.empty() ? ", there are no fields" : ", expected one of " + expected));
  }
}

std::string JsonFields::type_error(const nlohmann::json& v, const std::string& expected) {
  return "invalid type: " + describe(v) + ", expected " + expected;
}

template <>
bool JsonFields::convert<bool>(const nlohmann::json& v, const std::string& key) const {
  if (!v.is_boolean()) throw FieldError::shape(what_, key, type_error(v, "a boolean"), true);
  return v.get<bool>();
}

template <>
std::string JsonFields::convert<std::string>(const nlohmann::json& v,
                                             const std::string& key) const {
  if (!v.is_string()) throw FieldError::shape(what_, key, type_error(v, "a string"), true);
  return v.get<std::string>();
}

template <>
uint64_t JsonFields::convert<uint64_t>(const nlohmann::json& v, const std::string& key) const {
  if (!v.is_number_unsigned())
    throw FieldError::shape(what_, key, type_error(v, "a non-negative integer (at most 2^64-1)"),
                            true);
  return v.get<uint64_t>();
}

template <>
uint32_t JsonFields::convert<uint32_t>(const nlohmann::json& v, const std::string& key) const {
  if (!v.is_number_unsigned())
    throw FieldError::shape(what_, key,
                            type_error(v, "a non-negative integer (at most 4294967295)"), true);
  const uint64_t value = v.get<uint64_t>();
  if (value > std::numeric_limits<uint32_t>::max())
    throw FieldError::shape(
        what_, key,
        "invalid value: integer `" + std::to_string(value) + "`, expected at most 4294967295",
        true);
  return static_cast<uint32_t>(value);
}

template <>
nlohmann::json JsonFields::convert<nlohmann::json>(const nlohmann::json& v,
                                                   const std::string&) const {
  return v;
}

}  // namespace kiln::api
