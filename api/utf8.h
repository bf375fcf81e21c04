// UTF-8 checks for text that crosses Kiln's boundaries. JSON (the API's replies, GET
// /vm/config) carries only valid UTF-8: strings that must be text (command line, ids, names)
// are refused at input when they are not; strings that may be arbitrary bytes (host paths) are
// accepted, and replies are serialized with invalid sequences replaced by U+FFFD.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::api {

// Offset of the first byte that does not begin a valid UTF-8 sequence (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), or nullopt when all of `text` is valid.
std::optional<size_t> invalid_utf8_at(std::string_view text);

// Throws kiln::UsageError "<what>: not valid UTF-8 (byte 0xE9 at offset 2)" unless `text` is
// valid UTF-8.
void require_utf8(std::string_view what, std::string_view text);

// `text` with each invalid byte replaced by U+FFFD: for messages and JSON replies.
std::string valid_utf8(std::string_view text);

}  // namespace kiln::api
