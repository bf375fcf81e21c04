#include "api/http/http_parser.h"

#include <algorithm>

namespace kiln::api {

namespace {

// RFC 9110 5.6.2 tchar.
bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

char to_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return to_lower(x) == to_lower(y);
         });
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls f(element) for each comma-separated element of a header value, OWS trimmed.
template <typename F>
void for_each_element(std::string_view value, F f) {
  for (;;) {
    const size_t comma = value.find(',');
    f(trim_ows(value.substr(0, comma)));
    if (comma == std::string_view::npos) return;
    value.remove_prefix(comma + 1);
  }
}

}  // namespace

void HttpParser::feed(std::string_view data) {
  if (state_ == State::kError) return;  // nothing more will be parsed: do not buffer
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    scan_ -= std::min(scan_, pos_);
    pos_ = 0;
  }
  buf_.append(data);
}

bool HttpParser::reject(int status, std::string reason) {
  fail(status, std::move(reason));
  return false;
}

HttpParser::Status HttpParser::fail(int status, std::string reason) {
  state_ = State::kError;
  error_.status = status;
  error_.reason = std::move(reason);
  expect_continue_ = false;
  buf_.clear();
  pos_ = scan_ = 0;
  return Status::kError;
}

bool HttpParser::take_line(size_t limit, int status, const char* what, std::string_view& line) {
  const size_t nl = buf_.find('\n', std::max(pos_, scan_));
  if (nl == std::string::npos) {
    scan_ = buf_.size();
    // A line of exactly `limit` bytes may still be waiting for its "\r\n".
    if (buf_.size() - pos_ > limit + 1) fail(status, std::string(what) + " too long");
    return false;
  }
  // Length first: the verdict must not depend on how the bytes were split into feed() calls.
  if (nl - pos_ > limit + 1) {
    fail(status, std::string(what) + " too long");
    return false;
  }
  if (nl == pos_ || buf_[nl - 1] != '\r') {
    fail(400, "line not terminated by CRLF");
    return false;
  }
  const size_t len = nl - 1 - pos_;
  line = std::string_view(buf_).substr(pos_, len);
  pos_ = scan_ = nl + 1;
  return true;
}

bool HttpParser::parse_request_line(std::string_view line) {
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return reject(400, "malformed request line");
  const std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);

  if (!is_token(method)) return reject(400, "invalid method");
  if (target.empty() ||
      !std::all_of(target.begin(), target.end(), [](char c) { return c > 0x20 && c < 0x7f; }))
    return reject(400, "invalid request target");

  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !is_digit(version[5]) ||
      version[6] != '.' || !is_digit(version[7]))
    return reject(400, "malformed HTTP version");
  if (version == "HTTP/1.1") {
    http10_ = false;
  } else if (version == "HTTP/1.0") {
    http10_ = true;
  } else {
    return reject(505, "HTTP version not supported");
  }

  // absolute-form (RFC 9112 3.2.2): keep only the path and query.
  bool absolute = false;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (!istarts_with(target, scheme)) continue;
    target.remove_prefix(scheme.size());
    const size_t end = target.find_first_of("/?");
    target = end == std::string_view::npos ? std::string_view() : target.substr(end);
    absolute = true;
    break;
  }
  if (absolute && (target.empty() || target.front() == '?')) {
    req_.path = "/";  // "http://host" and "http://host?q" mean "/"
    if (!target.empty()) req_.query = target.substr(1);
  } else {
    if (target.front() != '/') return reject(400, "unsupported request target");
    const size_t q = target.find('?');
    req_.path = target.substr(0, q);
    if (q != std::string_view::npos) req_.query = target.substr(q + 1);
  }
  req_.method = method;
  return true;
}

bool HttpParser::parse_header_line(std::string_view line) {
  if (req_.headers.size() >= limits_.headers) return reject(431, "too many headers");
  if (line.front() == ' ' || line.front() == '\t')
    return reject(400, "obsolete header line folding");
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return reject(400, "malformed header line");
  const std::string_view name = line.substr(0, colon);
  if (!is_token(name)) return reject(400, "invalid header name");
  const std::string_view value = trim_ows(line.substr(colon + 1));
  for (char c : value)
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
      return reject(400, "invalid character in header value");
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), to_lower);
  req_.headers.emplace_back(std::move(lower), std::string(value));
  return true;
}

bool HttpParser::finish_head() {
  bool has_length = false, bad_length = false, conflict = false, too_large = false;
  std::string_view length_digits;  // leading zeros stripped
  bool conn_close = false, conn_keep_alive = false, expect_continue = false;
  for (const auto& [name, value] : req_.headers) {
    if (name == "transfer-encoding") return reject(501, "Transfer-Encoding is not supported");
    if (name == "content-length") {
      for_each_element(value, [&](std::string_view e) {
        if (e.empty() || !std::all_of(e.begin(), e.end(), is_digit)) {
          bad_length = true;
          return;
        }
        while (e.size() > 1 && e.front() == '0') e.remove_prefix(1);
        if (has_length && e != length_digits) conflict = true;
        has_length = true;
        length_digits = e;
      });
    } else if (name == "connection") {
      for_each_element(value, [&](std::string_view e) {
        if (iequals(e, "close")) conn_close = true;
        if (iequals(e, "keep-alive")) conn_keep_alive = true;
      });
    } else if (name == "expect") {
      expect_continue = expect_continue || iequals(value, "100-continue");
    }
  }
  if (bad_length) return reject(400, "invalid Content-Length");
  if (conflict) return reject(400, "conflicting Content-Length headers");
  content_length_ = 0;
  if (has_length) {
    too_large = length_digits.size() > 15;
    if (!too_large) content_length_ = std::stoull(std::string(length_digits));
    if (too_large || content_length_ > limits_.body)
      return reject(413, "request body larger than " + std::to_string(limits_.body) + " bytes");
  }
  req_.keep_alive = http10_ ? (conn_keep_alive && !conn_close) : !conn_close;
  expect_continue_ = expect_continue && !http10_ && content_length_ > buffered();
  return true;
}

HttpParser::Status HttpParser::next(HttpRequest& out) {
  for (;;) {
    std::string_view line;
    switch (state_) {
      case State::kError:
        return Status::kError;
      case State::kRequestLine:
        if (!take_line(limits_.request_line, 414, "request line", line))
          return state_ == State::kError ? Status::kError : Status::kIncomplete;
        if (line.empty()) continue;  // RFC 9112 2.2: empty lines before a request are ignored
        req_ = HttpRequest{};
        if (!parse_request_line(line)) return Status::kError;
        state_ = State::kHeaders;
        break;
      case State::kHeaders:
        if (!take_line(limits_.header_line, 431, "header line", line))
          return state_ == State::kError ? Status::kError : Status::kIncomplete;
        if (!line.empty()) {
          if (!parse_header_line(line)) return Status::kError;
        } else {
          if (!finish_head()) return Status::kError;
          state_ = State::kBody;
        }
        break;
      case State::kBody:
        if (buffered() < content_length_) return Status::kIncomplete;
        req_.body.assign(buf_, pos_, content_length_);
        pos_ += content_length_;
        scan_ = pos_;
        expect_continue_ = false;
        state_ = State::kRequestLine;
        out = std::move(req_);
        req_ = HttpRequest{};
        return Status::kRequest;
    }
  }
}

}  // namespace kiln::api
