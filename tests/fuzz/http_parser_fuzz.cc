// libFuzzer target for kiln::api::HttpParser and serialize(). Input: byte 0 picks the limits
// (tiny ones reach every limit with short inputs), bytes 1-2 seed the piece sizes, the rest is
// the byte stream of one connection. Checks, besides the sanitizers:
//  - feeding the stream whole and in random-sized pieces gives the same requests and verdict;
//  - a parsed request respects the limits and, written back out, parses to the same request;
//  - the parser never buffers more than one incomplete request can need;
//  - serialize() frames every response with a Content-Length that matches its body.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "api/http/http.h"
#include "api/http/http_parser.h"

namespace {

using kiln::api::HttpParser;
using kiln::api::HttpRequest;
using kiln::api::HttpResponse;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

struct Outcome {
  std::vector<HttpRequest> requests;
  HttpParser::Status last = HttpParser::Status::kIncomplete;
  HttpParser::Error error;
  size_t buffered = 0;
};

bool same(const HttpRequest& a, const HttpRequest& b, bool compare_keep_alive = true) {
  return a.method == b.method && a.path == b.path && a.query == b.query && a.headers == b.headers &&
         a.body == b.body && (!compare_keep_alive || a.keep_alive == b.keep_alive);
}

size_t max_pending(const HttpParser::Limits& l) {
  return (l.request_line + 2) + l.headers * (l.header_line + 2) + (l.header_line + 2) + l.body;
}

void check_request(const HttpRequest& r, const HttpParser::Limits& limits) {
  CHECK(!r.method.empty());
  CHECK(!r.path.empty() && r.path[0] == '/');
  CHECK(r.path.find('?') == std::string::npos);
  CHECK(r.headers.size() <= limits.headers);
  CHECK(r.body.size() <= limits.body);
  for (const auto& [name, value] : r.headers) {
    CHECK(!name.empty());
    for (char c : name) CHECK(!(c >= 'A' && c <= 'Z') && c != ':' && c != ' ');
    for (char c : value) CHECK(c != '\r' && c != '\n' && c != '\0');
    CHECK(name != "transfer-encoding");
  }
}

// The request written back out as HTTP/1.1 parses to itself (keep-alive aside: the version is
// not kept).
void check_round_trip(const HttpRequest& r, const HttpParser::Limits& limits) {
  std::string wire =
      r.method + " " + r.path + (r.query.empty() ? "" : "?" + r.query) + " HTTP/1.1\r\n";
  for (const auto& [name, value] : r.headers)
    wire += name + ":" + value + "\r\n";  // never longer than the original line
  wire += "\r\n" + r.body;
  HttpParser again(limits);
  again.feed(wire);
  HttpRequest copy;
  const auto status = again.next(copy);
  if (status != HttpParser::Status::kRequest) {
    // Only the request line can grow: an absolute-form target became origin-form, never longer.
    std::fprintf(stderr, "round trip failed: %d %s\n", again.error().status,
                 again.error().reason.c_str());
    std::abort();
  }
  CHECK(same(r, copy, false));
  CHECK(again.buffered() == 0);
}

void check_serialize(const HttpResponse& response) {
  for (bool keep_alive : {true, false}) {
    const std::string wire = serialize(response, keep_alive);
    const size_t end = wire.find("\r\n\r\n");
    CHECK(end != std::string::npos);
    const std::string head = wire.substr(0, end + 2);
    CHECK(head.rfind("HTTP/1.1 ", 0) == 0);
    const size_t cl = head.find("\r\nContent-Length: ");
    if (response.status == 204) {
      CHECK(cl == std::string::npos);
      CHECK(wire.size() == end + 4);
    } else {
      CHECK(cl != std::string::npos);
      CHECK(std::stoul(head.substr(cl + 18)) == response.body.size());
      CHECK(wire.substr(end + 4) == response.body);
    }
    // Header lines cannot be split or injected.
    size_t lines = 0;
    for (size_t i = 0; i + 1 < head.size(); ++i) lines += head[i] == '\r' && head[i + 1] == '\n';
    CHECK(lines == 2 + (response.status != 204 ? 1u + !response.content_type.empty() : 0u) +
                       (keep_alive ? 0u : 1u));
  }
}

// Calls next() until it stops handing out requests.
void drain(HttpParser& parser, Outcome& out) {
  for (;;) {
    HttpRequest r;
    out.last = parser.next(r);
    if (out.last != HttpParser::Status::kRequest) break;
    out.requests.push_back(std::move(r));
  }
  if (out.last == HttpParser::Status::kError) out.error = parser.error();
  out.buffered = parser.buffered();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  HttpParser::Limits limits;
  if (data[0] & 1) {
    limits.request_line = 24 + (data[0] >> 1) % 40;
    limits.header_line = 16 + (data[0] >> 3) % 40;
    limits.headers = 1 + (data[0] >> 5);
    limits.body = 64;
  }
  uint32_t rng = (uint32_t{data[1]} << 8 | data[2]) * 2654435761u + 1;
  const std::string_view stream(reinterpret_cast<const char*>(data + 3), size - 3);

  // Whole.
  Outcome whole;
  {
    HttpParser parser(limits);
    parser.feed(stream);
    drain(parser, whole);
  }

  // In pieces, taking requests as they complete.
  Outcome pieces;
  {
    HttpParser parser(limits);
    size_t pos = 0;
    while (pos < stream.size()) {
      rng ^= rng << 13;
      rng ^= rng >> 17;
      rng ^= rng << 5;
      const size_t n =
          std::min<size_t>(stream.size() - pos, 1 + rng % ((rng >> 24) < 16 ? 4096 : 16));
      parser.feed(stream.substr(pos, n));
      pos += n;
      drain(parser, pieces);
      CHECK(pieces.buffered <= max_pending(limits));
      if (pieces.last == HttpParser::Status::kError) break;
    }
    if (stream.empty()) drain(parser, pieces);
  }

  CHECK(whole.requests.size() == pieces.requests.size());
  for (size_t i = 0; i < whole.requests.size(); ++i)
    CHECK(same(whole.requests[i], pieces.requests[i]));
  CHECK(whole.last == pieces.last);
  CHECK(whole.error.status == pieces.error.status);
  CHECK(whole.error.reason == pieces.error.reason);
  CHECK(whole.buffered == pieces.buffered);

  for (const HttpRequest& r : whole.requests) {
    check_request(r, limits);
    check_round_trip(r, limits);
    HttpResponse response;
    response.status = r.body.size() % 3 == 0 ? 204 : 200;
    response.body = r.body;
    response.content_type = std::string(stream.substr(0, 40));  // CR, LF, NUL...
    check_serialize(response);
  }
  if (whole.last == HttpParser::Status::kError) {
    const int s = whole.error.status;
    CHECK(s == 400 || s == 413 || s == 414 || s == 431 || s == 501 || s == 505);
    CHECK(!whole.error.reason.empty());
    CHECK(whole.buffered == 0);
    check_serialize(kiln::api::fault_response(s, whole.error.reason));
  }
  return 0;
}
