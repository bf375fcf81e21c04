#include "api/nesting.h"

namespace kiln::api {

std::optional<size_t> json_nesting_exceeded(std::string_view text, size_t limit) {
  return kiln::json_nesting_exceeded(text, limit);
}

std::optional<size_t> toml_nesting_exceeded(std::string_view text, size_t limit) {
  return kiln::toml_nesting_exceeded(text, limit);
}

}  // namespace kiln::api
