// How deep TOML text nests, checked before toml11 (which parses arrays and inline tables
// recursively: text nested thousands deep would overflow the stack) sees it. Shared by Kiln's
// TOML config files (api/nesting.h) and kiln-oci's runtime configuration (oci/).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace kiln {

// The 1-based line where the nesting of `text` first exceeds `limit`, or nullopt: arrays,
// inline tables and table headers; brackets in strings (basic, literal, multi-line) and
// comments do not count; dotted keys (`a.b.c`) and table headers add a level per part, since
// toml11 makes each part a nested table. Invalid TOML is not diagnosed here.
std::optional<size_t> toml_nesting_exceeded(std::string_view text, size_t limit);

}  // namespace kiln
