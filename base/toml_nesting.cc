#include "base/toml_nesting.h"

#include <vector>

namespace kiln {

// Tables nest through brackets and also through dotted keys: `[a.b.c]` and `a.b.c = 1` are
// three levels, and a key's levels add to those of the table header above it. The scanner
// follows keys and values closely enough to count both; strings and comments are skipped.
std::optional<size_t> toml_nesting_exceeded(std::string_view text, size_t limit) {
  size_t line = 1;
  size_t header_levels = 0;  // of the last [table] / [[array]] header
  size_t depth = 0;          // levels at the current position
  bool key = true;           // in a key (dots nest) rather than a value
  bool header = false;       // inside a [table] header
  struct Open {
    char bracket;       // '[' array or '{' inline table
    size_t base_depth;  // depth at the bracket's own level
  };
  std::vector<Open> open;
  auto starts = [&](size_t i, std::string_view s) { return text.substr(i, s.size()) == s; };
  auto line_end = [&] {  // a new key/value pair or header may start on the next line
    ++line;
    if (open.empty() && !header) {
      key = true;
      depth = header_levels;
    }
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      line_end();
    } else if (c == '#') {  // comment: to the end of the line
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
    } else if (starts(i, "\"\"\"") || starts(i, "'''")) {  // multi-line string
      const std::string_view close = text.substr(i, 3);
      const bool escapes = c == '"';
      for (i += 3; i < text.size(); ++i) {
        if (text[i] == '\n') ++line;
        if (escapes && text[i] == '\\') {
          if (i + 1 < text.size() && text[i + 1] == '\n') ++line;
          ++i;
        } else if (starts(i, close)) {
          // Up to two more quotes may end the string's content ("""a""""" is valid).
          i += 2;
          while (i + 1 < text.size() && text[i + 1] == c) ++i;
          break;
        }
      }
    } else if (c == '"' || c == '\'') {  // one-line string: ends at its quote or the line end
      for (++i; i < text.size() && text[i] != c && text[i] != '\n'; ++i)
        if (c == '"' && text[i] == '\\' && i + 1 < text.size() && text[i + 1] != '\n') ++i;
      if (i < text.size() && text[i] == '\n') line_end();
    } else if (c == '.' && key) {
      if (++depth > limit) return line;
    } else if (c == '=' && !header) {
      key = false;
    } else if (c == '[' && key && open.empty() && !header) {  // [table] or [[array of tables]]
      header = true;
      depth = 1;
      if (i + 1 < text.size() && text[i + 1] == '[') ++i, ++depth;
      if (depth > limit) return line;
    } else if (c == ']' && header) {
      if (i + 1 < text.size() && text[i + 1] == ']') ++i;
      header = false;
      header_levels = depth;
      key = false;  // only a comment may follow on this line
    } else if (c == '[' || c == '{') {
      open.push_back({c, depth});
      if (++depth > limit) return line;
      key = c == '{';
    } else if ((c == ']' || c == '}') && !open.empty()) {
      depth = open.back().base_depth;
      open.pop_back();
      key = false;
    } else if (c == ',' && !open.empty()) {
      depth = open.back().base_depth + 1;
      key = open.back().bracket == '{';
    }
  }
  return std::nullopt;
}

}  // namespace kiln
