#include "api/http/http.h"

#include <cstdio>

#include "api/utf8.h"

namespace kiln::api {

const std::string* HttpRequest::header(std::string_view name) const {
  for (const auto& [key, value] : headers)
    if (key == name) return &value;
  return nullptr;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "";
  }
}

namespace {

bool has_no_content(int status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

// `text` without control characters (no header can be split or injected through it).
void append_printable(std::string& out, std::string_view text) {
  for (char c : text)
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) out += c;
}

bool valid_header_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == ':') return false;
  return true;
}

}  // namespace

std::string serialize(const HttpResponse& response, bool keep_alive) {
  const int status = response.status >= 100 && response.status <= 999 ? response.status : 500;
  std::string out;
  out.reserve(128 + response.body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += reason_phrase(status);
  out += "\r\nServer: Kiln\r\n";
  for (const auto& [name, value] : response.headers) {
    if (!valid_header_name(name)) continue;
    out += name;
    out += ": ";
    append_printable(out, value);
    out += "\r\n";
  }
  if (!has_no_content(status)) {
    if (!response.content_type.empty()) {
      out += "Content-Type: ";
      append_printable(out, response.content_type);
      out += "\r\n";
    }
    out += "Content-Length: ";
    out += std::to_string(response.body.size());
    out += "\r\n";
  }
  if (!keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  if (!has_no_content(status)) out += response.body;
  return out;
}

std::string json_quote(std::string_view raw) {
  const std::string text = valid_utf8(raw);  // JSON text is UTF-8: invalid bytes become U+FFFD
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned char>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

HttpResponse fault_response(int status, std::string_view message) {
  HttpResponse r;
  r.status = status;
  r.body = "{\"fault_message\": " + json_quote(message) + "}";
  return r;
}

}  // namespace kiln::api
