// Incremental HTTP/1.1 request parser for one connection. Bytes go in with feed() in pieces of
// any size; next() hands out complete requests one at a time, in order. Strict where it matters
// (CRLF line ends, token method and header names, one consistent Content-Length, no
// Transfer-Encoding) and bounded: a request never makes it buffer more than its limits allow.
// No I/O, no logging, no threads: the server owns those.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "api/http/http.h"

namespace kiln::api {

class HttpParser {
 public:
  struct Limits {
    size_t request_line = 8 * 1024;  // bytes, CRLF excluded; longer -> 414
    size_t header_line = 8 * 1024;   // bytes per header line, CRLF excluded; longer -> 431
    size_t headers = 100;            // header lines per request; more -> 431
    size_t body = 64 * 1024;         // Content-Length; more -> 413
  };
  enum class Status {
    kIncomplete,  // needs more bytes
    kRequest,     // *out holds the next request
    kError,       // error() says why; final: the connection must answer it and close
  };
  struct Error {
    int status = 0;      // 400, 413, 414, 431, 501, 505
    std::string reason;  // short, for {"fault_message": ...}
  };

  HttpParser() = default;
  explicit HttpParser(Limits limits) : limits_(limits) {}

  // Appends bytes; parsing happens in next().
  void feed(std::string_view data);
  // Parses as far as the buffered bytes allow. kRequest moves the request into `out` (other
  // fields of `out` are overwritten). After kError every call returns kError.
  Status next(HttpRequest& out);
  const Error& error() const { return error_; }

  // True once per request whose head asked for "Expect: 100-continue" and whose body has not
  // all arrived yet: the server should send "HTTP/1.1 100 Continue" (RFC 9110 10.1.1).
  bool take_expect_continue() { return std::exchange(expect_continue_, false); }
  // Buffered bytes not yet returned as part of a request (a partial or pipelined request).
  size_t buffered() const { return buf_.size() - pos_; }
  // True while a request has begun (some of its bytes are buffered or its head has been parsed)
  // and is not complete.
  bool in_request() const {
    return state_ == State::kHeaders || state_ == State::kBody || buffered() > 0;
  }
  const Limits& limits() const { return limits_; }

 private:
  enum class State { kRequestLine, kHeaders, kBody, kError };

  Status fail(int status, std::string reason);
  bool reject(int status, std::string reason);  // fail(), then false
  // Finds the next CRLF-terminated line from pos_. Returns false if none is complete yet (or
  // on error: state_ is then kError). `limit` bounds the line; `status` is its overflow code.
  bool take_line(size_t limit, int status, const char* what, std::string_view& line);
  bool parse_request_line(std::string_view line);
  bool parse_header_line(std::string_view line);
  bool finish_head();

  Limits limits_;
  std::string buf_;
  size_t pos_ = 0;   // first unconsumed byte
  size_t scan_ = 0;  // where the search for '\n' resumes
  State state_ = State::kRequestLine;
  HttpRequest req_;
  bool http10_ = false;
  size_t content_length_ = 0;
  bool expect_continue_ = false;
  Error error_;
};

}  // namespace kiln::api
