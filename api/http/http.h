// HTTP/1.1 messages of the management API (Firecracker-style REST over a Unix socket): the
// request the parser produces, the response a handler returns, and the response's wire form.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::api {

struct HttpRequest {
  std::string method;  // as sent, case-sensitive: "GET", "PUT", "PATCH", ...
  std::string path;    // "/drives/rootfs": raw (not percent-decoded), no query string
  std::string query;   // after '?', raw; empty if none
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, values trimmed
  std::string body;
  // HTTP/1.1: true unless "Connection: close"; HTTP/1.0: only with "Connection: keep-alive".
  bool keep_alive = true;

  // The first header named `name` (lower-case), or nullptr.
  const std::string* header(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;  // 200, 204, 400, 404, 405, 413, 500, ...
  std::string body;  // JSON text or empty
  std::string content_type = "application/json";
  // Extra headers, written after Server (e.g. "Deprecation: true"). Control characters in
  // names and values are dropped, and so are names with ':' or spaces.
  std::vector<std::pair<std::string, std::string>> headers;
};

// The standard reason phrase ("OK", "Not Found"), or "" for a code it does not know.
std::string_view reason_phrase(int status);

// The response on the wire:
//   HTTP/1.1 200 OK\r\nServer: Kiln\r\nContent-Type: application/json\r\nContent-Length: N\r\n
//   [Connection: close\r\n]\r\nbody
// 204 (and 1xx/304) carry neither body nor Content-Type/Content-Length (RFC 9110 8.6).
// "Connection: close" is added when !keep_alive; the extra headers come after Server, on every
// status. Control characters in content_type and in the extra headers are dropped.
std::string serialize(const HttpResponse& response, bool keep_alive);

// `text` as a JSON string literal, quotes included; bytes that are not UTF-8 become U+FFFD.
std::string json_quote(std::string_view text);

// An error response in the API's shape: {"fault_message": "<message>"}.
HttpResponse fault_response(int status, std::string_view message);

}  // namespace kiln::api
