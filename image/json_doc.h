// Bounded JSON documents of an image (index.json, manifests, configs, manifest.json): at most
// kMaxJsonBytes, nested at most kMaxJsonNesting levels (checked before nlohmann parses, since
// its parser and the walks over its values recurse), and of the expected JSON type.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace kiln::image {

inline constexpr size_t kMaxJsonBytes = 4u << 20;
inline constexpr size_t kMaxJsonNesting = 64;

// Parses `text` as JSON within the bounds; `what` names the document in errors (UsageError).
nlohmann::json parse_json_document(std::string_view text, const std::string& what);
// The same, and the document must be an object.
nlohmann::json parse_json_object(std::string_view text, const std::string& what);

// Reads a whole regular file (a final symlink is not followed) of at most `limit` bytes.
std::string read_file_bounded(const std::string& path, size_t limit, const std::string& what);

// Field readers: a missing field gives the default, a field of the wrong type is a UsageError
// naming `what`.`key`.
std::string string_field(const nlohmann::json& obj, const char* key, const std::string& what);
const nlohmann::json* optional_field(const nlohmann::json& obj, const char* key,
                                     nlohmann::json::value_t type, const std::string& what);

}  // namespace kiln::image
