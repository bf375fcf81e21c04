// How deep JSON text nests, checked before a recursive parser or walk sees it (nlohmann's
// parse, dump, copy and comparison recurse through nested values: text nested thousands deep
// would overflow the stack). Shared by the API's bodies and config files (api/nesting.h) and
// container images' documents (image/json_doc.h).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace kiln {

// The 1-based line where the nesting of arrays and objects in the JSON `text` first exceeds
// `limit`, or nullopt. Brackets inside strings do not count. Invalid JSON is not diagnosed
// here: the parser does that.
std::optional<size_t> json_nesting_exceeded(std::string_view text, size_t limit);

}  // namespace kiln
