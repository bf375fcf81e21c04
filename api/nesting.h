// Nesting bounds for configuration text, checked before a recursive parser or a recursive walk
// over the parsed value sees it: toml11 parses arrays and inline tables recursively, and
// nlohmann's dump, copy and comparison recurse through nested values, so text nested
// thousands deep would overflow the stack. Real Kiln configurations nest 5 levels deep.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include "base/json_nesting.h"
#include "base/toml_nesting.h"

namespace kiln::api {

inline constexpr size_t kMaxNesting = 32;

// base/json_nesting.h's scan with the configuration bound.
std::optional<size_t> json_nesting_exceeded(std::string_view text, size_t limit = kMaxNesting);

// base/toml_nesting.h's scan with the configuration bound.
std::optional<size_t> toml_nesting_exceeded(std::string_view text, size_t limit = kMaxNesting);

}  // namespace kiln::api
