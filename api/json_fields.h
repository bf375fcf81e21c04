// Strict reading of a JSON request body or config object: every field is checked for its type,
// unknown fields are rejected by name. Errors are FieldError (a kiln::UsageError) with a message
// that names the object, the field and the expected type, in the words of Firecracker's parser
// ("machine-config: missing field `vcpu_count`", "drive: unknown field `x`, expected one of ...",
// "machine-config: vcpu_count: invalid type: string \"two\", expected a non-negative integer").
#pragma once

#include <nlohmann/json.hpp>

#include <initializer_list>
#include <optional>
#include <set>
#include <string>

#include "base/error.h"

namespace kiln::api {

// A bad field: `object` ("machine-config", "drives[1]") and `field` ("" for the object itself)
// let file front ends point at the line. The message is "object: field: problem".
class FieldError : public UsageError {
 public:
  FieldError(const std::string& object, const std::string& field, const std::string& problem)
      : FieldError(object + (field.empty() ? "" : ": " + field) + ": " + problem, object, field,
                   false) {}

  // The body does not have the object's shape (a missing or unknown field, a value of the wrong
  // type). `problem` uses the phrases Firecracker's clients match on ("missing field `x`",
  // "unknown field `x`, expected one of ...", "invalid type: ..."); the message is
  // "object: problem", or "object: field: problem" with `name_field`.
  static FieldError shape(const std::string& object, const std::string& field,
                          const std::string& problem, bool name_field = false) {
    FieldError e(object + (name_field ? ": " + field : "") + ": " + problem, object, field, true);
    e.problem_ = problem;
    return e;
  }

  const std::string& object() const { return object_; }
  const std::string& field() const { return field_; }
  bool is_shape_error() const { return shape_; }
  // For shape errors: the problem alone, without the object and field.
  const std::string& problem() const { return problem_; }

 private:
  FieldError(const std::string& message, const std::string& object, const std::string& field,
             bool shape)
      : UsageError(message), object_(object), field_(field), shape_(shape) {}

  std::string object_;
  std::string field_;
  bool shape_ = false;
  std::string problem_;
};

// The API's fault message for `e`: shape errors read as Firecracker's ("An error occurred when
// deserializing the json body of a request: missing field `x` at line 1 column 21.
// (machine-config: x)"; the position, of the end of the body's object, when `text`, the body as
// received, is given and the field is missing from the body itself), others are e.what().
std::string api_fault_message(const FieldError& e, const std::string& text = "");

// A FieldError for a string that is none of `variants` (Firecracker's "unknown variant `x`,
// expected one of `A`, `B`").
FieldError unknown_variant(const std::string& object, const std::string& field,
                           const std::string& value, std::initializer_list<const char*> variants);

class JsonFields {
 public:
  // `what` names the object in messages ("machine-config", "drives[1]").
  JsonFields(const nlohmann::json& object, std::string what);

  template <typename T>
  std::optional<T> optional(const std::string& key) {
    seen_.insert(key);
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return std::nullopt;
    return convert<T>(*it, key);
  }
  template <typename T>
  T required(const std::string& key) {
    auto value = optional<T>(key);
    if (!value) throw FieldError::shape(what_, key, "missing field `" + key + "`");
    return *value;
  }
  // Marks a field as known without reading it (accepted for compatibility, ignored).
  void ignore(const std::string& key) { seen_.insert(key); }
  // Throws if the object has a field nobody asked for.
  void reject_unknown() const;

 private:
  template <typename T>
  T convert(const nlohmann::json& v, const std::string& key) const;
  static std::string type_error(const nlohmann::json& v, const std::string& expected);

  const nlohmann::json& object_;
  std::string what_;
  std::set<std::string> seen_;
};

template <>
bool JsonFields::convert<bool>(const nlohmann::json& v, const std::string& key) const;
template <>
std::string JsonFields::convert<std::string>(const nlohmann::json& v, const std::string& key) const;
template <>
uint64_t JsonFields::convert<uint64_t>(const nlohmann::json& v, const std::string& key) const;
template <>
uint32_t JsonFields::convert<uint32_t>(const nlohmann::json& v, const std::string& key) const;
template <>
nlohmann::json JsonFields::convert<nlohmann::json>(const nlohmann::json& v,
                                                   const std::string& key) const;

}  // namespace kiln::api
